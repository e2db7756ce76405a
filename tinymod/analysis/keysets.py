"""Which frequencies a model uses: the logit-energy strength order, the key curve, and the
three named key sets, each with its rule.

Letters: p residues, K = floor(p/2) frequencies (k = 1..K), w_k = 2 pi k / p, T tokens,
N = p**T tuples, s = x_1 + ... + x_T (mod p) the sum a tuple's answer depends on.

- Strength: e_k = sum over the tuples and answers c of (Pi_k l)^2, where Pi_k projects each
  answer's logit table onto span{cos(w_k s), sin(w_k s)}. Strongest first, ties to the
  smaller k.
- `key_frequencies` (dominant): the spectral rule of `keysets.spectral_key_frequencies`.
- `functional_key_frequencies` (sufficient): the shortest prefix of the strength order that
  is enough on its own (FUNCTIONAL_RULE), counted at several levels.
- `in_use_key_frequencies` (used): every k whose removal alone from the weights (site
  `both`) multiplies the model's loss over all tuples by at least FACTOR, counted at
  several factors so that a reader sees whether the count sits in a gap or on an edge.
The key curve follows the strength order, one row per prefix (KEY_CURVE_RULE).
"""
import math

import numpy as np

from tinymod.analysis import ablate
from tinymod.analysis.records import KeySet
from tinymod.model.backend import to_numpy
from tinymod.model.data import all_tuples, grid_sums, targets
from tinymod.analysis.fourier import frequency_shares, spectrum
from tinymod.model.kernels import softmax_xent


THRESHOLD = 0.25                          # the spectral rule's default threshold
LEVEL = 0.99                              # the functional set's level
LEVELS = (0.9, 0.99, 0.999, 0.9999)       # the functional count is reported at each
FACTOR = 2.0                              # the in-use set's loss factor
FACTORS = (1.5, 2.0, 3.0, 5.0)            # the in-use count is reported at each
CURVE_SHARE = 0.999                       # the curve runs until this share of logit energy


# the three named sets: their names, and the fourier.json field that lists each
SET_FIELDS = {"in_use": "in_use_key_frequencies", "functional": "functional_key_frequencies",
              "spectral": "key_frequencies"}

STRENGTH_RULE = ("frequencies k >= 1 by their logit energy e_k = sum over all tuples and answers "
                 "c of (Pi_k l)^2, Pi_k projecting each answer's logit table onto span{cos(w_k s), "
                 "sin(w_k s)}, s the sum of the tokens mod p; descending, ties to the smaller k")
ABOVE_BAR_ACCURACY = 0.01                 # ... and within this much of the model's accuracy
FUNCTIONAL_RULE = (
    "the shortest prefix S of the strength order such that the model with every frequency "
    "outside S removed at site both has, on all tuples, accuracy at least the full model's and "
    "mean loss at most max(full loss * (1 + 1e-6), ln(1/level)), level {level}; for a model whose "
    "own loss is above ln(1/level) (no subset could beat a bar the whole model misses): keep-only "
    f"loss at most {FACTOR:g} x the model's and accuracy within {100 * ABOVE_BAR_ACCURACY:g} point "
    "of the model's")
IN_USE_RULE = ("every frequency k >= 1 whose removal alone from the weights (site both) "
               "multiplies the model's mean loss over all tuples by at least {factor:g} (for a model "
               "whose loss is exactly 0 in float64: raises it at all)")
KEY_CURVE_RULE = (
    f"one row per prefix n = 1..N of the strength order; N is the first n whose cumulative "
    f"share of the logit energy reaches {CURVE_SHARE}, raised to at least the in-use set's size "
    f"+ 3 and the functional set's size, at most floor(p/2). restricted_loss (all tuples) and "
    f"restricted_test_loss: the logits keeping each answer's mean and the first n frequencies' "
    f"terms in s; excluded_loss (train tuples): the logits with those terms taken out (Nanda et "
    f"al. 2023); keep_accuracy / keep_loss: only the first n frequencies kept in the weights "
    f"(site both), all tuples; removal_loss_ratio: the n-th frequency alone removed from the "
    f"weights (site both), loss over all tuples over the full model's")


KEY_RULE = ("k >= 1 is a key frequency when its share of the non-constant energy, averaged "
            "over E, E @ W_ih.T and W_out, is at least {threshold} times the largest such share")


THRESHOLDS = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5)   # the spectral count is reported at each


def weight_share(component_spectra):
    """Each frequency's share of the non-constant energy, averaged over the components'
    spectra (E, E @ W_ih.T, W_out): the spectral rule's measure, fourier.json's weight_share."""
    return np.mean([frequency_shares(s) for s in component_spectra], axis=0)


def spectral_key_frequencies(component_spectra, threshold=THRESHOLD):
    """The key-frequency rule (KEY_RULE): relative to the strongest frequency, so it does
    not depend on how many frequencies share the energy. Ascending ints."""
    mean_share = weight_share(component_spectra)
    if mean_share.max() <= 0:
        return []
    return [int(k) for k in np.flatnonzero(mean_share >= threshold * mean_share.max()) if k >= 1]


def weight_key_frequencies(params, threshold=THRESHOLD):
    """(key frequencies, mean share per frequency) from the weights alone (E, E @ W_ih.T,
    W_out): the cheap part of `analyze`, for commands that need only the key."""
    E, W_ih, W_out = (to_numpy(params[k]).astype(np.float64) for k in ("E", "W_ih", "W_out"))
    spectra = [spectrum(E), spectrum(E @ W_ih.T), spectrum(W_out)]
    return spectral_key_frequencies(spectra, threshold), weight_share(spectra)


def sum_projection(logits, freqs):
    """sum_{k in freqs} P_k L, where P_k projects each answer's slice L(..., c) onto
    span{cos(w_k s), sin(w_k s)}, s = x_1 + ... + x_T, over the grid of tuples (logits:
    (p,)*T + (p,)).

    Such a function depends on s mod p alone, so it is returned as Q (p, p) over (s, c):
    sum_k P_k L (tuple, c) = Q[s(tuple), c]. Projecting onto functions of s only needs
    G(s, c), the sum of L over the tuples with that s, and its DFT over s: with N = p**T
    tuples, P_k L = (2/N) Re(F_k e^{i w_k s}), F_k = sum_s G(s) e^{-i w_k s} (weight 1, not 2,
    at the Nyquist frequency), which is irfft over the kept frequencies, over N / p."""
    p, G = logits.shape[-1], sum_table(logits)                     # (s, c)
    F = np.fft.rfft(G, axis=0)                                     # (K+1, c)
    mask = np.zeros(F.shape[0])
    mask[[k for k in freqs if 1 <= k <= p // 2]] = 1.0
    return np.fft.irfft(F * mask[:, None], n=p, axis=0) / (logits.size / p ** 2)   # (s, c)


def sum_table(logits):
    """G (p, p) over (s, c): the sum of each answer's logits over the tuples whose tokens sum
    to s mod p (N / p tuples each), logits a grid (p,)*T + (p,)."""
    p, T = logits.shape[-1], logits.ndim - 1
    G = np.zeros((p, p))
    np.add.at(G, grid_sums(T, p), logits.reshape(-1, p))
    return G


def restricted_and_excluded(logits, freqs):
    """(restricted, excluded) logits, shaped like `logits`: each answer's mean over the
    tuples plus sum_{k in freqs} P_k L, and L minus that sum (see `sum_projection`)."""
    p, T = logits.shape[-1], logits.ndim - 1
    key_part = sum_projection(logits, freqs)[grid_sums(T, p)].reshape(logits.shape)
    restricted = logits.reshape(-1, p).mean(axis=0) + key_part
    return restricted, logits - key_part


def cross_entropy(logits, tuples):
    """Mean softmax cross-entropy of grid logits (p,)*T + (p,) at the tuples (n, T), whose
    target is their sum mod p."""
    rows = np.ascontiguousarray(logits[tuple(tuples.T)])          # (n, p)
    return float(softmax_xent(rows, targets(tuples, logits.shape[-1]))[0])


def logit_measures(logits, freqs, train_tuples, test_tuples):
    """restricted_loss (all tuples), restricted_test_loss (test tuples) and excluded_loss
    (train tuples) for the frequency set `freqs`."""
    p, T = logits.shape[-1], logits.ndim - 1
    restricted, excluded = restricted_and_excluded(logits, freqs)
    return {"restricted_loss": cross_entropy(restricted, all_tuples(p, T)),
            "restricted_test_loss": cross_entropy(restricted, test_tuples),
            "excluded_loss": cross_entropy(excluded, train_tuples)}


def logit_energy(logits):
    """e_k for k = 0..K (STRENGTH_RULE), logits a grid (p,)*T + (p,) over the answer c.

    Pi_k l depends on a tuple only through s, so it is the projection of G(s, c) / m, the
    mean of l over the m = N / p tuples with that s, and its energy over the tuples is
    m * ||P_k G / m||^2 = spectrum(G)_k / m."""
    p = logits.shape[-1]
    return spectrum(sum_table(logits), axis=0) / (logits.size / p ** 2)      # m = N / p


def strength_order(energy):
    """Frequencies k >= 1, strongest first by `energy` (indexed by k), ties to the smaller k."""
    return sorted(range(1, len(energy)), key=lambda k: (-energy[k], k))


class Scorer:
    """Loss and accuracy over all tuples of the float64 model with frequencies removed from
    the weights at site `both`; remembers what it has scored."""

    def __init__(self, params, activation, seq_len):
        self.p = params["E"].shape[0]
        self.params, self.evaluate = params, ablate.Evaluator(self.p, activation, seq_len=seq_len, test=False)
        self.seen = {}

    def __call__(self, removed):
        key = tuple(sorted(int(k) for k in removed))
        if key not in self.seen:
            self.seen[key] = self.evaluate(ablate.remove(self.params, key, "both"))
        return self.seen[key]

    def keep(self, kept):
        """The model with only `kept` left of the frequencies k >= 1."""
        return self(sorted(set(range(1, self.p // 2 + 1)) - set(kept)))


def ratio(loss, full):
    """loss / full; for a model whose loss is exactly 0 in float64, 1 or infinite."""
    return loss / full if full > 0 else (math.inf if loss > 0 else 1.0)


def removal_ratios(score):
    """{k: loss with k alone removed / full loss} for every k >= 1."""
    full = score([])["loss"]
    return {k: ratio(score([k])["loss"], full) for k in range(1, score.p // 2 + 1)}


def in_use(ratios, factor=FACTOR):
    """IN_USE_RULE: ascending ints."""
    return sorted(k for k, r in ratios.items() if r >= factor)


def in_use_of(params, activation, seq_len, factor=FACTOR):
    """The in-use set alone (IN_USE_RULE), for commands that need nothing else."""
    return in_use(removal_ratios(Scorer(params, activation, seq_len)), factor)


def functional_size(score, order, level=LEVEL):
    """The functional set's size at `level` (FUNCTIONAL_RULE): the first prefix that is enough."""
    full = score([])
    bar = math.log(1 / level)
    if full["loss"] > bar:             # relative to the model: the bar is one it misses itself
        bound, accuracy = FACTOR * full["loss"], full["accuracy"] - ABOVE_BAR_ACCURACY
    else:
        bound, accuracy = max(full["loss"] * (1 + 1e-6), bar), full["accuracy"]
    for n in range(len(order) + 1):
        kept = score.keep(order[:n])
        if kept["accuracy"] >= accuracy and kept["loss"] <= bound:
            return n
    return len(order)


def cumulative_shares(energy, order):
    """The cumulative share of the logit energy (k >= 1) along `order`; None when there is none."""
    total = float(np.sum(energy[1:]))
    return np.cumsum([energy[k] for k in order]) / total if total > 0 else None


def curve(logits, cumulative, order, score, ratios, size, split):
    """KEY_CURVE_RULE's rows for prefixes 1..size (`cumulative`: cumulative_shares)."""
    cumulative = np.zeros(len(order)) if cumulative is None else cumulative
    rows = []
    for n in range(1, size + 1):
        kept = score.keep(order[:n])
        rows.append({"n": n, "frequency": order[n - 1], "energy_share": float(cumulative[n - 1]),
                     **logit_measures(logits, order[:n], *split),
                     "keep_accuracy": kept["accuracy"], "keep_loss": kept["loss"],
                     "removal_loss_ratio": float(ratios[order[n - 1]])})
    return rows


def curve_length(cumulative, order, in_use_size, functional):
    reach = 1 if cumulative is None else int(np.searchsorted(cumulative, CURVE_SHARE - 1e-12) + 1)
    return min(len(order), max(reach, in_use_size + 3, functional))


def set_summary(freqs, rule, energy, logits, split) -> KeySet:
    """A named set: its members, rule, share of the logit energy and Nanda's two losses."""
    total = float(np.sum(energy[1:]))
    return {"frequencies": [int(k) for k in freqs], "size": len(freqs), "rule": rule,
            "logit_energy_share": float(sum(energy[k] for k in freqs) / total) if total > 0 else 0.0,
            **logit_measures(logits, freqs, *split)}


def find_key_sets(params, activation, seq_len, logits, spectral, spectral_rule, split):
    """The strength order, the three named sets and the key curve, JSON-ready.

    `logits` is the model's grid of logits (tabulate.model_tables), `spectral` the dominant
    set with its rule, `split` the run's (train, test) tuples."""
    energy = logit_energy(logits)
    order = strength_order(energy)
    cumulative = cumulative_shares(energy, order)
    score = Scorer(params, activation, seq_len)
    ratios = removal_ratios(score)
    used = in_use(ratios)
    counts = {str(level): functional_size(score, order, level) for level in LEVELS}
    functional = sorted(order[:counts[str(LEVEL)]])
    full = score([])
    return {
        "strength_rule": STRENGTH_RULE,
        "logit_energy": [float(e) for e in energy],
        "strength_order": order,
        "model_loss": full["loss"], "model_accuracy": full["accuracy"],
        "key_frequencies": [int(k) for k in spectral],
        "functional_key_frequencies": functional,
        "in_use_key_frequencies": used,
        "functional_counts_by_level": counts,
        "in_use_counts_by_factor": {f"{f:g}": len(in_use(ratios, f)) for f in FACTORS},
        "key_sets": {
            "spectral": set_summary(spectral, spectral_rule, energy, logits, split),
            "functional": {**set_summary(functional, FUNCTIONAL_RULE.format(level=LEVEL), energy, logits, split),
                           "level": LEVEL},
            "in_use": {**set_summary(used, IN_USE_RULE.format(factor=FACTOR), energy, logits, split),
                       "factor": FACTOR},
        },
        "key_curve_rule": KEY_CURVE_RULE,
        "key_curve": curve(logits, cumulative, order, score, ratios,
                           curve_length(cumulative, order, len(used), len(functional)), split),
    }
