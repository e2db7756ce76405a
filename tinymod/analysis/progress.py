"""Progress measures through training (after Nanda et al. 2023, "Progress measures for
grokking"): every parameter snapshot of a run, measured against the final model's
in-use key frequencies S (keysets), and the three phases they reveal.

Per snapshot (one row):
  - train/test loss and accuracy, the weight norm (total and per matrix);
  - restricted_loss / restricted_test_loss: cross-entropy of the logits keeping only each
    answer's mean and the S terms cos/sin(w_k (a+b)) (all pairs / test pairs): how well
    the Fourier circuit alone does;
  - excluded_loss: cross-entropy on the train pairs of the logits with the S terms taken
    out: how well the model does without the circuit, i.e. by memorisation;
  - the energy share at S of E, E @ W_ih.T, W_out and the logits; how many frequencies
    hold 90% of the energy of E @ W_ih.T (sparsity); the top-2|S| singular energy of
    E @ W_ih.T and W_out (low rank).
Letters: p residues, K = |S|.
"""
import math

import numpy as np

from tinymod.analysis import fourier, keysets, svd, tabulate
from tinymod.model import rnn
from tinymod.model.data import make_dataset
from tinymod.model.limits import GROK_ACC

GROK = GROK_ACC       # accuracy that counts as learned (the grok step's bar)
HALF = 0.5            # test accuracy at which generalisation overtakes memorisation
CLEAN = 0.99          # cleanup ends when the test loss is at most ln(1/CLEAN)
PHASE_RULES = {
    "memorisation": f"from step 0 to the first snapshot with train accuracy >= {GROK}",
    "circuit formation": f"from the end of memorisation to the first snapshot with test accuracy >= {HALF}",
    "cleanup": (f"from the end of circuit formation to the first snapshot with test loss <= "
                f"ln(1/{CLEAN}) (on geometric average {CLEAN:.0%} of the probability on the right "
                f"answer), or to the last snapshot, marked open"),
}
NAMES = tuple(PHASE_RULES)


def frequencies_for(spec, level=0.9):
    """How many frequencies k >= 1, strongest first, hold `level` of the non-constant energy
    (the effective-rank rule of tinymod.analysis.svd, on a spectrum)."""
    energy = np.sort(np.asarray(spec[1:], dtype=np.float64))[::-1]
    return svd.effective_rank(np.cumsum(energy) / energy.sum(), level) if energy.sum() > 0 else 0


def measure(params, activation, key, train_tuples, test_tuples):
    """One row of progress measures for a model (see the module docstring)."""
    P = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    T = train_tuples.shape[1]
    tables = tabulate.model_tables(P, activation, T)
    logits = tables["logits"]                                       # (p,)*T + (p,) over (tuple, c)
    p = logits.shape[-1]
    row = {}
    for name, tuples in (("train", train_tuples), ("test", test_tuples)):
        answers = np.argmax(logits[tuple(tuples.T)], axis=1)
        row[f"{name}_loss"] = keysets.cross_entropy(logits, tuples)
        row[f"{name}_acc"] = float(np.mean(answers == tuples.sum(axis=1) % p))
    row["weight_norm"], row["weight_norm_per_matrix"] = rnn.weight_norms(P)
    row.update(keysets.logit_measures(logits, key, train_tuples, test_tuples))
    spectra = {name: fourier.spectrum(tables[name]) for name in ("E", "U", "W_out")}
    spectra["logits"] = fourier.spectrum(logits, axis=-1)
    row["key_energy"] = fourier.energy_shares_at(spectra, {n: s[1:].sum() for n, s in spectra.items()}, key)
    row["frequencies_for_90"] = frequencies_for(spectra["U"])
    row["top_2k_singular_energy"] = {}
    for name in ("U", "W_out"):
        shares = svd.cumulative_energy(np.linalg.svd(tables[name], compute_uv=False))   # min(p, H) values
        r = min(2 * len(key), len(shares))
        row["top_2k_singular_energy"][name] = float(shares[r - 1]) if r else 0.0
    return row


def phases(rows):
    """The phases (PHASE_RULES) as [{"name", "start", "end", "open"}], in order; a phase
    that has not begun by the last snapshot is left out."""
    steps = [r["step"] for r in rows]

    def first(start, test):
        return next((r["step"] for r in rows if r["step"] >= start and test(r)), None)

    ends = [first(0, lambda r: r["train_acc"] >= GROK)]
    ends.append(first(ends[0], lambda r: r["test_acc"] >= HALF) if ends[0] is not None else None)
    ends.append(first(ends[1], lambda r: r["test_loss"] <= math.log(1 / CLEAN)) if ends[1] is not None else None)
    out, start = [], steps[0]
    for name, end in zip(NAMES, ends):
        out.append({"name": name, "start": start, "end": steps[-1] if end is None else end,
                    "open": end is None})
        if end is None:
            break
        start = end
    return out


def measure_snapshots(snapshots, config, key, on_row=None):
    """progress.json's content for a run's `snapshots` ([(step, params)], in step order, as
    tinymod.training.checkpoint.read_snapshots gives them), measured at the frequencies
    `key` (the final model's in-use set)."""
    ds = make_dataset(config["p"], config["seq_len"], config["frac"], config["seed"])
    rows = []
    for step, params in snapshots:
        rows.append({"step": step, **measure(params, config["activation"], key, ds.x_train, ds.x_test)})
        if on_row:
            on_row(rows[-1])
    return {"key_frequencies": [int(k) for k in key],
            "key_set": "the final model's in-use key frequencies (fourier.json's in_use_key_frequencies)",
            "rows": rows, "phases": phases(rows), "phase_rules": PHASE_RULES}
