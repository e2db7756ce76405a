"""Ablation: remove Fourier frequencies from the model and measure what is left.

Removing frequency k projects it out of every residue-indexed weight at the chosen site:
    embedding  E     <- (I - P_k) E               (the way residues enter)
    readout    W_out <- (I - P_k) W_out, b_out likewise  (the way answers leave)
    both       both of the above (the default: the frequency is gone from the input
               and from the output, so no path through the network can carry it)
where P_k = B_k.T B_k projects onto frequency k's rows of the real Fourier basis.
"""
import numpy as np

from tinymod.analysis import fourier
from tinymod.model import rnn
from tinymod.model.backend import asarray, namespace
from tinymod.model.limits import EVAL_BATCH
from tinymod.model.data import all_tuples, make_dataset, targets

SITES = ("embedding", "readout", "both")


def projector(p, freqs):
    """(p, p) orthogonal projector onto the given frequencies (k = 0 is the constant)."""
    basis = fourier.fourier_basis(p)
    rows = basis.matrix[np.isin(basis.freqs, list(freqs))]
    return rows.T @ rows


def remove(params, freqs, site="both"):
    """A float64 copy of params with the frequencies projected out of the residue axes at
    `site`, on the params' own backend."""
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, got {site!r}")
    xp = namespace(params["E"])
    out = {k: asarray(xp, v, xp.float64, like=v, copy=True) for k, v in params.items()}
    p = out["E"].shape[0]
    keep = asarray(xp, np.eye(p) - projector(p, freqs), xp.float64, like=out["E"])
    if site in ("embedding", "both"):
        out["E"] = keep @ out["E"]
    if site in ("readout", "both"):
        out["W_out"] = keep @ out["W_out"]
        out["b_out"] = keep @ out["b_out"]
    return out


class Evaluator:
    """The one evaluator of ablated models: accuracy and loss on all tuples and (unless
    `test` is False) on the run's test split (`frac`, `seed`)."""

    def __init__(self, p, activation="relu", frac=0.3, seed=0, seq_len=2, tick=None, test=True):
        self.activation, self.tick = activation, tick
        self.x_all = all_tuples(p, seq_len)
        self.y_all = targets(self.x_all, p)
        ds = make_dataset(p, seq_len, frac, seed) if test else None
        self.x_test, self.y_test = (ds.x_test, ds.y_test) if ds else (None, None)

    def __call__(self, params):
        xp, like = namespace(params["E"]), params["E"]
        on = lambda a: asarray(xp, a, like=like)          # tokens to the params' device
        # in batches: the memory of an evaluation does not grow with p**seq_len
        loss, acc = rnn.evaluate(params, on(self.x_all), on(self.y_all), self.activation, EVAL_BATCH)
        out = {"accuracy": acc, "loss": loss}
        if self.x_test is not None:
            test_loss, test_acc = rnn.evaluate(params, on(self.x_test), on(self.y_test), self.activation, EVAL_BATCH)
            out.update(test_accuracy=test_acc, test_loss=test_loss)
        if self.tick:
            self.tick()
        return out


def cumulative(params, order, evaluate, site):
    """Remove the frequencies in `order` one after another; a point after each."""
    return [{"removed": [int(k) for k in order[:n]], **evaluate(remove(params, order[:n], site))}
            for n in range(1, len(order) + 1)]


def evaluations(p, key, seeds=5):
    """How many models `analyze` evaluates: the baseline, every frequency alone, the key
    frequencies one after another, as many non-key ones, and `seeds` random key orders."""
    return 1 + p // 2 + len(key) * (1 + seeds) + min(len(key), p // 2 - len(key))


def measure_removals(params, config, key, strength, site="both", seeds=5, tick=None):
    """baseline, single (every k), cumulative over key frequencies (strongest first), and
    the controls: as many non-key frequencies (random order, seed 0) and random orders of
    the key frequencies over `seeds` seeds. `tick()` is called after each evaluation."""
    p = params["E"].shape[0]
    evaluate = Evaluator(p, config.get("activation", "relu"), config.get("frac", 0.3),
                         config.get("seed", 0), config.get("seq_len", 2), tick)
    freqs = list(range(1, p // 2 + 1))
    key_order = sorted(key, key=lambda k: -strength[k])
    others = [k for k in freqs if k not in key]
    rng = np.random.default_rng(0)
    non_key = [int(k) for k in rng.permutation(others)[:len(key)]]
    random_orders = [[int(k) for k in np.random.default_rng(s).permutation(key)] for s in range(seeds)]
    return {
        "site": site,
        "key_frequencies": list(key),
        "baseline": evaluate(params),
        "single": [{"frequency": k, "is_key": k in key, **evaluate(remove(params, [k], site))}
                   for k in freqs],
        "cumulative": cumulative(params, key_order, evaluate, site),
        "control_non_key": cumulative(params, non_key, evaluate, site),
        "control_random_key_orders": [cumulative(params, order, evaluate, site)
                                      for order in random_orders],
    }
