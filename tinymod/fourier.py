"""The real Fourier basis of Z_p, spectra of the model, key frequencies, and the
Fourier-multiplication fit.

Letters: p residues, K = floor(p/2) frequencies (k = 0..K), w_k = 2 pi k / p, H hidden units.

The basis has p orthonormal rows over the residues n = 0..p-1: the constant 1/sqrt(p); then,
for k = 1..ceil(p/2)-1, sqrt(2/p) cos(w_k n) and sqrt(2/p) sin(w_k n); and, when p is even,
the Nyquist row cos(pi n)/sqrt(p) (its sine is zero). Projecting a residue-indexed axis onto
it gives coefficients whose squares, summed per frequency, are that axis's energy spectrum
(Parseval: the spectrum sums to the squared norm).
"""
from typing import NamedTuple

import numpy as np

from tinymod import rnn
from tinymod.backend import asarray, namespace, to_numpy
from tinymod.data import all_tuples


class Basis(NamedTuple):
    matrix: np.ndarray   # (p, p) orthonormal rows
    names: list          # "const", "cos 1", "sin 1", ...
    freqs: np.ndarray    # (p,) the frequency k of each row


def fourier_basis(p):
    """The real DFT basis of Z_p, row by row, with names and frequencies."""
    n = np.arange(p)
    rows, names, freqs = [np.full(p, 1 / np.sqrt(p))], ["const"], [0]
    for k in range(1, p // 2 + 1):
        w = 2 * np.pi * k / p
        if 2 * k == p:                                  # Nyquist: cos(pi n), no sine
            rows.append(np.cos(w * n) / np.sqrt(p))
            names.append(f"cos {k}")
            freqs.append(k)
            continue
        rows += [np.sqrt(2 / p) * np.cos(w * n), np.sqrt(2 / p) * np.sin(w * n)]
        names += [f"cos {k}", f"sin {k}"]
        freqs += [k, k]
    return Basis(np.array(rows), names, np.array(freqs))


def _float(values):
    xp = namespace(values)
    return (np.asarray(values, dtype=np.float64) if xp is np else values), xp


def _basis_like(values, p):
    xp = namespace(values)
    return asarray(xp, fourier_basis(p).matrix, values.dtype, like=values)


def _membership(values, p):
    """(p, K+1) one-hot: which frequency each basis row belongs to."""
    freqs = fourier_basis(p).freqs
    onehot = (freqs[:, None] == np.arange(p // 2 + 1)[None, :]).astype(np.float64)
    return asarray(namespace(values), onehot, values.dtype, like=values)


def project(values, axis=0):
    """Fourier coefficients of `values` along a residue axis (length p), same shape."""
    values, xp = _float(values)
    basis = _basis_like(values, values.shape[axis])
    return xp.moveaxis(xp.tensordot(basis, values, axes=((1,), (axis,))), 0, axis)


def project_2d(values):
    """Coefficients over the first two axes, both residues (a, b): B @ M @ B.T per slice."""
    values, xp = _float(values)
    basis = _basis_like(values, values.shape[0])
    over_a = xp.tensordot(basis, values, axes=((1,), (0,)))        # (i, b, ...)
    return xp.moveaxis(xp.tensordot(basis, over_a, axes=((1,), (1,))), 0, 1)   # (i, j, ...)


def spectrum(values, axis=0):
    """Energy per frequency k = 0..K along `axis`, summed over every other axis."""
    coeffs = project(values, axis)
    xp = namespace(coeffs)
    p = coeffs.shape[axis]
    energy = xp.sum(xp.reshape(xp.moveaxis(coeffs**2, axis, 0), (p, -1)), axis=1)   # (p,)
    return _membership(coeffs, p).T @ energy


def _fold_2d(energy):
    """Energy per pair of basis rows (p, p, ...) -> per pair of frequencies (K+1, K+1, ...)."""
    xp = namespace(energy)
    M = _membership(energy, energy.shape[0])
    folded = xp.tensordot(M, energy, axes=((0,), (0,)))            # (k_a, b, ...)
    return xp.moveaxis(xp.tensordot(M, folded, axes=((0,), (1,))), 0, 1)   # (k_a, k_b, ...)


def spectrum_2d(values):
    """Energy per frequency pair (k_a, k_b), (K+1, K+1), summed over trailing axes."""
    coeffs = project_2d(values)
    xp = namespace(coeffs)
    p = coeffs.shape[0]
    return _fold_2d(xp.sum(xp.reshape(coeffs**2, (p, p, -1)), axis=2))


def shares(spec):
    """Each frequency's share of the non-constant energy (k >= 1); zeros if there is none."""
    spec, xp = _float(spec)
    total = xp.sum(spec[1:])
    out = xp.zeros_like(spec)
    if float(total) > 0:
        out[1:] = spec[1:] / total
    return out


# --- the model, over every input ---------------------------------------------------------

def model_tables(params, activation="relu", seq_len=2):
    """Everything residue-indexed in a model, as float64 NumPy arrays: E (p, D),
    U = E @ W_ih.T (p, H), W_out (p, H), and over all p**T tuples (a grid with one axis per
    token): the hidden state h_T (p,)*T + (H,), the logits (p,)*T + (p,) over the answer
    c, and every h_t, t = 1..T, as (N, H) rows in `hs`. The forward pass runs on the params'
    own backend; the tables come back to NumPy here, at the edge."""
    xp = namespace(params["E"])
    params = {k: asarray(xp, v, xp.float64, like=v) for k, v in params.items()}
    p = params["E"].shape[0]
    tokens = all_tuples(p, seq_len)                                # (N, T)
    x = asarray(xp, tokens, like=params["E"])
    logits, cache = rnn.forward(params, x, activation)
    host = {k: to_numpy(v) for k, v in params.items()}
    H1 = to_numpy(cache.H1)
    hs = [H1[tokens[:, 0]]] + [to_numpy(cache.hs[t]) for t in range(2, seq_len + 1)]   # h_1 .. h_T
    grid = (p,) * seq_len
    return {"E": host["E"], "U": host["E"] @ host["W_ih"].T, "W_out": host["W_out"],
            "hidden": hs[-1].reshape(grid + (-1,)), "logits": to_numpy(logits).reshape(grid + (p,)),
            "hs": hs, "tokens": tokens, "W_hh": host["W_hh"]}


def grid_sums(T, p):
    """(x_1 + ... + x_T) mod p for every tuple of the grid, flattened in C order (N,)."""
    return all_tuples(p, T).sum(axis=1) % p


KEY_RULE = ("k >= 1 is a key frequency when its share of the non-constant energy, averaged "
            "over E, E @ W_ih.T and W_out, is at least {threshold} times the largest such share")


def key_frequencies(component_spectra, threshold=0.25):
    """The key-frequency rule (KEY_RULE): relative to the strongest frequency, so it does
    not depend on how many frequencies share the energy. Ascending ints."""
    mean_share = np.mean([shares(s) for s in component_spectra], axis=0)
    if mean_share.max() <= 0:
        return []
    return [int(k) for k in np.flatnonzero(mean_share >= threshold * mean_share.max()) if k >= 1]


def neuron_frequencies(hidden):
    """Per hidden unit: its dominant frequency and the fraction of its variance that
    frequency explains. A unit's energy at k is the 2-D energy at (k, 0), (0, k) and
    (k, k) (terms in a, in b, and in a +- b); variance excludes (0, 0). Dead units: k = 0."""
    p, _, H = hidden.shape
    K = p // 2
    energy = _fold_2d(project_2d(hidden) ** 2)                     # (K+1, K+1, H)
    variance = energy.reshape(-1, H).sum(axis=0) - energy[0, 0]   # (H,)
    k = np.arange(1, K + 1)
    per_freq = energy[k, 0] + energy[0, k] + energy[k, k]         # (K, H)
    dominant = np.argmax(per_freq, axis=0) + 1
    explained = np.where(variance > 0, per_freq.max(axis=0) / np.maximum(variance, 1e-300), 0.0)
    dominant = np.where(variance > 1e-12 * max(variance.max(), 1e-300), dominant, 0)
    return dominant, explained


def design(angles, freqs, p, multiples=(1,)):
    """(N, 1 + 2 |freqs| |multiples| |angles|): a constant and cos/sin(m w_k angle) for each
    frequency k, multiple m and angle (N,) of residues."""
    columns = [np.ones(len(angles[0]))]
    for k in freqs:
        for m in multiples:
            w = 2 * np.pi * m * k / p
            for angle in angles:
                columns += [np.cos(w * angle), np.sin(w * angle)]
    return np.stack(columns, axis=1)


def fvu(y, fit, axis=None):
    """Fraction of variance unexplained, 1 - R^2: the residual sum of squares over the sum
    of squares of y centred on its mean over `axis` (every axis when None)."""
    centred = y - y.mean(axis=axis, keepdims=True)
    total = float(np.sum(centred ** 2))
    return float(np.sum((y - fit) ** 2) / total) if total > 0 else float("nan")   # nothing to explain


def relative_error(y, fit):
    """Relative L2 error ||y - fit|| / ||y|| (not centred); NaN when y is all zero."""
    norm = float(np.linalg.norm(y))
    return float(np.linalg.norm(y - fit) / norm) if norm > 0 else float("nan")


def fit_logits(logits, key):
    """Fit logits over (x_1, ..., x_T, c), a grid (p,)*T + (p,), by a function of c alone plus
    sum_k alpha_k cos(w_k (s - c)) + beta_k sin(w_k (s - c)) over the key frequencies, with
    s = x_1 + ... + x_T (for T = 2: a + b - c).

    Softmax ignores a constant per tuple, so each tuple's row is centred first. The
    features are orthogonal over the full grid, so the least-squares fit is a sum of
    projections. Returns (relative error ||L - fit|| / ||L||, accuracy of the fit, fit).
    The centred L has mean zero, so its FVU is that error squared.
    """
    p, T = logits.shape[-1], logits.ndim - 1
    L = logits.reshape(-1, p)
    L = L - L.mean(axis=1, keepdims=True)                          # (N, p)
    sums = grid_sums(T, p)                                         # (N,)
    fit = np.broadcast_to(L.mean(axis=0), L.shape).copy()          # the c-only part
    s = (sums[:, None] - np.arange(p)[None, :]) % p                # (N, p) s - c
    G = np.bincount(s.ravel(), weights=(L - fit).ravel(), minlength=p)   # sums per s - c
    n = np.arange(p)
    for k in key:
        w = 2 * np.pi * k / p
        for f in (np.cos, np.sin):
            wave = f(w * n)                                        # (p,) over s - c
            norm = np.dot(wave, wave) * L.shape[0]
            if norm > 1e-9:
                fit += (np.dot(G, wave) / norm) * wave[s]
    accuracy = float(np.mean(np.argmax(fit, axis=1) == sums))
    return relative_error(L, fit), accuracy, fit.reshape(logits.shape)


WELL_EXPLAINED = 0.85   # a hidden unit is well explained when R^2 >= this (Nanda et al. 2023)


def fit_hidden(hidden, key):
    """Least-squares fit of the hidden state, a grid (p,)*T + (H,), on a constant and, for
    each key frequency, cos/sin of w_k times each token and times their sum; for T = 2 also
    w_k (a - b) (a relu of a sum of cosines makes both the sum and the difference terms).

    Returns the relative L2 error ||h - fit|| / ||h||, the FVU with each unit centred on
    its mean over (a, b), each unit's own R^2, and the share of live units (non-zero
    variance) with R^2 >= WELL_EXPLAINED."""
    p, T, H = hidden.shape[0], hidden.ndim - 1, hidden.shape[-1]
    tokens = all_tuples(p, T)                                      # (N, T)
    angles = list(tokens.T) + [tokens.sum(axis=1)]                 # each token, and the sum
    if T == 2:
        angles.append(tokens[:, 0] - tokens[:, 1])                 # a - b
    X = design(angles, key, p)                                     # (N, F)
    Y = hidden.reshape(-1, H)
    coef, *_ = np.linalg.lstsq(X, Y, rcond=None)
    fit = X @ coef
    variance = np.sum((Y - Y.mean(axis=0)) ** 2, axis=0)           # (H,) per unit, centred
    residual = np.sum((Y - fit) ** 2, axis=0)                      # (H,)
    alive = variance > 1e-12 * max(float(variance.max()), 1e-300)
    r2 = np.where(alive, 1 - residual / np.where(alive, variance, 1.0), 0.0)
    well = int(np.sum(alive & (r2 >= WELL_EXPLAINED)))
    return {"relative_error": relative_error(Y, fit), "fvu": fvu(Y, fit, axis=0),
            "unit_r2": r2.tolist(), "units_alive": int(alive.sum()), "units_well_explained": well,
            "share_well_explained": well / max(int(alive.sum()), 1)}


# --- logit-level progress measures (after Nanda et al. 2023) ----------------------------

def sum_projection(logits, freqs):
    """sum_{k in freqs} P_k L, where P_k projects each answer's slice L(..., c) onto
    span{cos(w_k s), sin(w_k s)}, s = x_1 + ... + x_T, over the grid of tuples (logits:
    (p,)*T + (p,)).

    Such a function depends on s mod p alone, so it is returned as Q (p, p) over (s, c):
    sum_k P_k L (tuple, c) = Q[s(tuple), c]. Projecting onto functions of s only needs
    G(s, c), the sum of L over the tuples with that s, and its DFT over s: with N = p**T
    tuples, P_k L = (2/N) Re(F_k e^{i w_k s}), F_k = sum_s G(s) e^{-i w_k s} (weight 1, not 2,
    at the Nyquist frequency), which is irfft over the kept frequencies, over N / p."""
    p, T = logits.shape[-1], logits.ndim - 1
    L = logits.reshape(-1, p)                                      # (N, p)
    sums = grid_sums(T, p)
    G = np.zeros((p, p))                                           # (s, c)
    np.add.at(G, sums, L)
    F = np.fft.rfft(G, axis=0)                                     # (K+1, c)
    mask = np.zeros(F.shape[0])
    mask[[k for k in freqs if 1 <= k <= p // 2]] = 1.0
    return np.fft.irfft(F * mask[:, None], n=p, axis=0) / (L.shape[0] / p)   # (s, c)


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
    p = logits.shape[-1]
    rows = logits[tuple(tuples.T)]                                 # (n, p)
    shifted = rows - rows.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    correct = shifted[np.arange(len(tuples)), tuples.sum(axis=1) % p]
    return float(np.mean(log_z - correct))


def logit_measures(logits, freqs, train_tuples, test_tuples):
    """restricted_loss (all tuples), restricted_test_loss (test tuples) and excluded_loss
    (train tuples) for the frequency set `freqs`."""
    p, T = logits.shape[-1], logits.ndim - 1
    restricted, excluded = restricted_and_excluded(logits, freqs)
    return {"restricted_loss": cross_entropy(restricted, all_tuples(p, T)),
            "restricted_test_loss": cross_entropy(restricted, test_tuples),
            "excluded_loss": cross_entropy(excluded, train_tuples)}


def hidden_spectrum(energy_2d):
    """A 1-D view of the hidden state's 2-D spectrum: at k >= 1 the energy at (k, 0), (0, k)
    and (k, k); at 0 the constant. Other pairs count only in the total."""
    K = energy_2d.shape[0] - 1
    k = np.arange(1, K + 1)
    return np.concatenate([[energy_2d[0, 0]], energy_2d[k, 0] + energy_2d[0, k] + energy_2d[k, k]])


def weight_key_frequencies(params, threshold=0.25):
    """(key frequencies, mean share per frequency) from the weights alone (E, E @ W_ih.T,
    W_out): the cheap part of `analyze`, for commands that need only the key."""
    E, W_ih, W_out = (to_numpy(params[k]).astype(np.float64) for k in ("E", "W_ih", "W_out"))
    spectra = [spectrum(E), spectrum(E @ W_ih.T), spectrum(W_out)]
    return key_frequencies(spectra, threshold), np.mean([shares(s) for s in spectra], axis=0)


THRESHOLDS = (0.1, 0.2, 0.25, 0.3, 0.4, 0.5)   # the spectral count is reported at each


def hidden_by_sum(hidden):
    """The hidden state's mean over the tuples with each running sum s (p, H): the part of
    h_T that is a function of s alone."""
    p, T, H = hidden.shape[0], hidden.ndim - 1, hidden.shape[-1]
    flat, sums = hidden.reshape(-1, H), grid_sums(T, p)
    out = np.zeros((p, H))
    np.add.at(out, sums, flat)
    return out / np.bincount(sums, minlength=p)[:, None]


def energy_shares_at(spectra, totals, freqs):
    """Each component's share of its non-constant energy at the frequencies `freqs`."""
    freqs = list(freqs)
    return {name: float(np.sum(spectra[name][freqs]) / totals[name]) if totals[name] > 0 else 0.0
            for name in spectra}


def analyze_tables(params, activation="relu", threshold=0.25, seq_len=2):
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
    key = key_frequencies(weights, threshold)
    totals = {name: spec[1:].sum() for name, spec in spectra.items()}
    totals["hidden"] = hidden_total
    tables.update(spectra=spectra, totals=totals)
    accuracy = float(np.mean(np.argmax(tables["logits"].reshape(-1, p), axis=1) == grid_sums(seq_len, p)))
    report = {
        "p": p,
        "seq_len": seq_len,
        "key_frequencies": key,
        "key_rule": KEY_RULE.format(threshold=threshold),
        "threshold": threshold,
        "spectral_count_by_threshold": {str(t): len(key_frequencies(weights, t)) for t in THRESHOLDS},
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


def analyze(params, activation="relu", threshold=0.25, fit_key=None, split=None, seq_len=2):
    """analyze_tables' report plus the older multi-frequency fits at `fit_key` (the spectral
    key frequencies when None): `fit`, `energy_share_fit` and, given `split` (train and test
    tuples), `logit_measures`. The pipeline's fits of named objects live in tinymod.fits."""
    report, tables = analyze_tables(params, activation, threshold, seq_len)
    fit_key = report["key_frequencies"] if fit_key is None else [int(k) for k in fit_key]
    logit_error, fit_accuracy, _ = fit_logits(tables["logits"], fit_key)
    hidden = fit_hidden(tables["hidden"], fit_key)
    report["energy_share_fit"] = energy_shares_at(tables["spectra"], tables["totals"], fit_key)
    report["fit"] = {"frequencies": fit_key,
                     "logits_relative_error": logit_error, "logits_fvu": logit_error ** 2,
                     "logits_fit_accuracy": fit_accuracy,
                     "hidden_relative_error": hidden["relative_error"], "hidden_fvu": hidden["fvu"],
                     "hidden_units_alive": hidden["units_alive"],
                     "hidden_units_well_explained": hidden["units_well_explained"],
                     "hidden_share_well_explained": hidden["share_well_explained"],
                     "well_explained_r2": WELL_EXPLAINED, "hidden_unit_r2": hidden["unit_r2"],
                     "measures": FIT_MEASURES}
    if split is not None:
        report["logit_measures"] = logit_measures(tables["logits"], fit_key, *split)
    return report


FIT_MEASURES = (
    "relative_error = ||y - fit|| / ||y||; fvu (fraction of variance unexplained, 1 - R^2) = "
    "||y - fit||^2 / ||y - mean(y)||^2. Logits are centred per (a, b) row (softmax ignores a "
    "row constant), so their mean is 0 and logits_fvu = logits_relative_error^2. The hidden "
    "state is centred per unit over (a, b); a unit is well explained when its own R^2 >= "
    "well_explained_r2.")


def clock_coordinates(E, key):
    """For each key frequency, each residue's embedding restricted to that frequency, in
    the 2-D plane it spans (its top two singular directions): points on an ellipse
    (a circle when the cos and sin parts have equal weight), in the order k * a mod p."""
    basis = fourier_basis(E.shape[0])
    out = {}
    for k in key:
        rows = basis.matrix[basis.freqs == k]                     # (2, p)
        part = rows.T @ (rows @ E)                                # (p, D) frequency-k part
        u, s, _ = np.linalg.svd(part, full_matrices=False)
        out[str(k)] = (u[:, :2] * s[:2]).tolist()                  # (p, 2)
    return out
