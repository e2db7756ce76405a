"""A model's tables over every input, and the Fourier picture drawn from them: spectra of
E, E @ W_ih.T, W_out, the hidden state and the logits, the spectral key frequencies, the
units' dominant frequencies and the clock.

Letters: p residues, T tokens, N = p**T tuples, D embedding, H hidden units.
"""
import numpy as np

from tinymod.analysis import fits, fourier, keysets
from tinymod.model import rnn
from tinymod.model.backend import asarray, namespace, to_numpy
from tinymod.model.data import all_tuples, grid_sums
from tinymod.model.trace import trace
from tinymod.analysis.fourier import energy_shares_at, hidden_spectrum, neuron_frequencies, spectrum, spectrum_2d

# the residue-indexed components every spectrum is taken of, with their labels
COMPONENTS = {"E": "embedding E", "U": "input table E @ W_ih.T", "W_out": "readout W_out",
              "hidden": "hidden h_2 over (a, b)", "logits": "logits over c"}


WEIGHT_STRENGTH_RULE = ("frequencies k >= 1 by weight_share, the weights' mean share of non-constant energy "
                        "over E, E @ W_ih.T and W_out (the spectral rule's measure), strongest first, ties "
                        "to the smaller k; ablation removes the spectral set in this order. strength_order "
                        "is the other order, by logit energy")


def components(seq_len=2):
    """COMPONENTS, the hidden state named for `seq_len` tokens."""
    tokens = "a, b" if seq_len == 2 else ", ".join(f"x_{i}" for i in range(1, seq_len + 1))
    return {**COMPONENTS, "hidden": f"hidden h_{seq_len} over ({tokens})"}


def model_tables(params, activation="relu", seq_len=2):
    """Everything residue-indexed in a model, as float64 NumPy arrays: E (p, D),
    U = E @ W_ih.T (p, H), W_out (p, H), and over all p**T tuples (a grid with one axis per
    token): the hidden state h_T (p,)*T + (H,), the logits (p,)*T + (p,) over the answer
    c, every h_t, t = 1..T, as (N, H) rows in `hs`, and every named activation of the traced
    forward (tinymod.model.trace) over the N tuples in `trace`. The forward pass runs on the
    params' own backend; the tables come back to NumPy here, at the edge."""
    xp = namespace(params["E"])
    params = {k: asarray(xp, v, xp.float64, like=v) for k, v in params.items()}
    p = params["E"].shape[0]
    tokens = all_tuples(p, seq_len)                                # (N, T)
    named = {name: to_numpy(v) for name, v in trace(params, asarray(xp, tokens, like=params["E"]), activation).items()}
    hs = [named[f"h_{t}"] for t in range(1, seq_len + 1)]           # h_1 .. h_T (N, H)
    grid = (p,) * seq_len
    cell = rnn.cell_of(params)
    pre = [named[f"pre_{t}"] for t in range(1, seq_len + 1)] if cell == "rnn" else None
    return {"E": to_numpy(params["E"]), "U": named["U"], "W_out": to_numpy(params["W_out"]),
            "hidden": hs[-1].reshape(grid + (-1,)), "logits": named["logits"].reshape(grid + (p,)),
            "hs": hs, "tokens": tokens, "W_hh": to_numpy(params["W_hh"]), "cell": cell, "preactivations": pre,
            "trace": named}


def hidden_by_sum(hidden):
    """The hidden state's mean over the tuples with each running sum s (p, H): the part of
    h_T that is a function of s alone."""
    p, T, H = hidden.shape[0], hidden.ndim - 1, hidden.shape[-1]
    flat, sums = hidden.reshape(-1, H), grid_sums(T, p)
    out = np.zeros((p, H))
    np.add.at(out, sums, flat)
    return out / np.bincount(sums, minlength=p)[:, None]


def clock_coordinates(E, key):
    """For each key frequency, each residue's embedding restricted to that frequency, in
    the 2-D plane it spans (its top two singular directions): points on an ellipse
    (a circle when the cos and sin parts have equal weight), in the order k * a mod p."""
    basis = fourier.fourier_basis(E.shape[0])
    out = {}
    for k in key:
        rows = basis.matrix[basis.freqs == k]                     # (2, p)
        part = rows.T @ (rows @ E)                                # (p, D) frequency-k part
        u, s, _ = np.linalg.svd(part, full_matrices=False)
        xy = np.zeros((E.shape[0], 2))                            # (p, 2); D = 1 leaves one axis
        xy[:, :min(2, len(s))] = u[:, :2] * s[:2]
        out[str(k)] = xy.tolist()
    return out


def picture_and_tables(params, activation="relu", threshold=keysets.THRESHOLD, seq_len=2):
    """(report, tables): the spectra of a model over all p**seq_len tuples, its spectral key
    frequencies and the energy there, its units' dominant frequencies and its clock, as
    JSON-ready data; `tables` (model_tables) gains `spectra` and `totals`. The 2-D hidden
    spectrum and the per-unit frequencies exist for T = 2; for other T the hidden state's
    spectrum is that of its mean per running sum."""
    p = params["E"].shape[0]
    tables = model_tables(params, activation, seq_len)
    spectra = {name: spectrum(tables[name], axis=0) for name in ("E", "U", "W_out")}
    spectra["logits"] = spectrum(tables["logits"], axis=-1)
    if seq_len == 2:
        hidden_2d = spectrum_2d(tables["hidden"])
        spectra["hidden"] = hidden_spectrum(hidden_2d)
        hidden_total = hidden_2d.sum() - hidden_2d[0, 0]
    else:
        hidden_2d = None
        spectra["hidden"] = spectrum(hidden_by_sum(tables["hidden"]), axis=0)
        hidden_total = spectra["hidden"][1:].sum()
    weights = [spectra["E"], spectra["U"], spectra["W_out"]]
    key = keysets.spectral_key_frequencies(weights, threshold)
    share = keysets.weight_share(weights)
    totals = {name: spec[1:].sum() for name, spec in spectra.items()}
    totals["hidden"] = hidden_total
    tables.update(spectra=spectra, totals=totals)
    accuracy = float(np.mean(np.argmax(tables["logits"].reshape(-1, p), axis=1) == grid_sums(seq_len, p)))
    report = {
        "p": p,
        "seq_len": seq_len,
        "key_frequencies": key,
        "key_rule": keysets.KEY_RULE.format(threshold=threshold),
        "threshold": threshold,
        "spectral_count_by_threshold": {str(t): len(keysets.spectral_key_frequencies(weights, t)) for t in keysets.THRESHOLDS},
        "weight_share": share.tolist(),
        "weight_strength_order": sorted(range(1, p // 2 + 1), key=lambda k: (-share[k], k)),
        "weight_strength_rule": WEIGHT_STRENGTH_RULE,
        "accuracy_all_pairs": accuracy,
        "spectra": {name: spec.tolist() for name, spec in spectra.items()},
        "hidden_spectrum_2d": None if hidden_2d is None else hidden_2d.tolist(),
        "energy_share": energy_shares_at(spectra, totals, key),
        "neurons": None,
        "clock": clock_coordinates(tables["E"], key),
    }
    if seq_len == 2:
        dominant, explained = neuron_frequencies(tables["hidden"])
        report["neurons"] = {"dominant_frequency": dominant.tolist(), "explained": explained.tolist(),
                             "count_per_frequency": np.bincount(dominant, minlength=p // 2 + 1).tolist()}
    return report, tables


def fourier_picture(params, activation="relu", threshold=keysets.THRESHOLD, fit_key=None, split=None, seq_len=2):
    """analyze_tables' report plus the older multi-frequency fits at `fit_key` (the spectral
    key frequencies when None): `fit`, `energy_share_fit` and, given `split` (train and test
    tuples), `logit_measures`. The pipeline's fits of named objects live in tinymod.analysis.fits."""
    report, tables = picture_and_tables(params, activation, threshold, seq_len)
    fit_key = report["key_frequencies"] if fit_key is None else [int(k) for k in fit_key]
    logit_error, fit_accuracy, _ = fits.fit_logits(tables["logits"], fit_key)
    hidden = fits.fit_hidden(tables["hidden"], fit_key)
    report["energy_share_fit"] = energy_shares_at(tables["spectra"], tables["totals"], fit_key)
    report["fit"] = {"frequencies": fit_key,
                     "logits_relative_error": logit_error, "logits_fvu": logit_error ** 2,
                     "logits_fit_accuracy": fit_accuracy,
                     "hidden_relative_error": hidden["relative_error"], "hidden_fvu": hidden["fvu"],
                     "hidden_units_alive": hidden["units_alive"],
                     "hidden_units_well_explained": hidden["units_well_explained"],
                     "hidden_share_well_explained": hidden["share_well_explained"],
                     "well_explained_r2": fits.WELL_EXPLAINED, "hidden_unit_r2": hidden["unit_r2"],
                     "measures": fits.FIT_MEASURES}
    if split is not None:
        report["logit_measures"] = keysets.logit_measures(tables["logits"], fit_key, *split)
    return report
