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

def model_tables(params, activation="relu"):
    """Everything residue-indexed in a seq_len-2 model, as float64 NumPy arrays:
    E (p, D), U = E @ W_ih.T (p, H), W_out (p, H), hidden h_2 over all (a, b) (p, p, H)
    and logits over all (a, b, c) (p, p, p). The forward pass over all p^2 pairs runs on
    the params' own backend; the tables come back to NumPy here, at the edge."""
    xp = namespace(params["E"])
    params = {k: asarray(xp, v, xp.float64, like=v) for k, v in params.items()}
    p = params["E"].shape[0]
    x = asarray(xp, all_tuples(p, 2), like=params["E"])
    logits, cache = rnn.forward(params, x, activation)
    host = {k: to_numpy(v) for k, v in params.items()}
    return {"E": host["E"], "U": host["E"] @ host["W_ih"].T, "W_out": host["W_out"],
            "hidden": to_numpy(cache.hs[-1]).reshape(p, p, -1),
            "logits": to_numpy(logits).reshape(p, p, p)}


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


def fit_logits(logits, key):
    """Fit logits (p, p, p) over (a, b, c) by a function of c alone plus
    sum_k alpha_k cos(w_k (a+b-c)) + beta_k sin(w_k (a+b-c)) over the key frequencies.

    Softmax ignores a constant per (a, b), so each (a, b) row is centred first. The
    features are orthogonal over the full grid, so the least-squares fit is a sum of
    projections. Returns (relative error ||L - fit|| / ||L||, accuracy of the fit, fit).
    """
    p = logits.shape[0]
    a, b, c = np.ix_(np.arange(p), np.arange(p), np.arange(p))
    L = logits - logits.mean(axis=2, keepdims=True)
    fit = np.broadcast_to(L.mean(axis=(0, 1)), L.shape).copy()     # the c-only part
    s = (a + b - c) % p                                            # (p, p, p)
    G = np.bincount(s.ravel(), weights=(L - fit).ravel(), minlength=p)   # sums per a+b-c
    n = np.arange(p)
    for k in key:
        w = 2 * np.pi * k / p
        for f in (np.cos, np.sin):
            wave = f(w * n)                                        # (p,) over s
            norm = np.dot(wave, wave) * p * p
            if norm > 1e-9:
                fit += (np.dot(G, wave) / norm) * wave[s]
    error = np.linalg.norm(L - fit) / max(np.linalg.norm(L), 1e-300)
    accuracy = float(np.mean(np.argmax(fit, axis=2) == (a[:, :, 0] + b[:, :, 0]) % p))
    return float(error), accuracy, fit


def fit_hidden(hidden, key):
    """Least-squares fit of the hidden state (p, p, H) over (a, b) on a constant and, for
    each key frequency, cos/sin of w_k a, w_k b and w_k (a+b). Relative error ||h - fit|| / ||h||."""
    p, _, H = hidden.shape
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    columns = [np.ones(p * p)]
    for k in key:
        w = 2 * np.pi * k / p
        for angle in (a, b, a + b):
            columns += [np.cos(w * angle).ravel(), np.sin(w * angle).ravel()]
    X = np.stack(columns, axis=1)                                  # (p*p, F)
    Y = hidden.reshape(p * p, H)
    coef, *_ = np.linalg.lstsq(X, Y, rcond=None)
    return float(np.linalg.norm(Y - X @ coef) / max(np.linalg.norm(Y), 1e-300))


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


def analyze(params, activation="relu", threshold=0.25):
    """The whole Fourier picture of a seq_len-2 model, as plain JSON-ready data."""
    p = params["E"].shape[0]
    tables = model_tables(params, activation)
    spectra = {name: spectrum(tables[name], axis=0) for name in ("E", "U", "W_out")}
    spectra["logits"] = spectrum(tables["logits"], axis=2)
    hidden_2d = spectrum_2d(tables["hidden"])
    spectra["hidden"] = hidden_spectrum(hidden_2d)
    key = key_frequencies([spectra["E"], spectra["U"], spectra["W_out"]], threshold)
    totals = {name: spec[1:].sum() for name, spec in spectra.items()}
    totals["hidden"] = hidden_2d.sum() - hidden_2d[0, 0]
    energy_share = {name: float(spectra[name][key].sum() / totals[name]) if totals[name] > 0 else 0.0
                    for name in spectra}
    logit_error, fit_accuracy, _ = fit_logits(tables["logits"], key)
    dominant, explained = neuron_frequencies(tables["hidden"])
    accuracy = float(np.mean(np.argmax(tables["logits"], axis=2) ==
                             np.add.outer(np.arange(p), np.arange(p)) % p))
    return {
        "p": p,
        "key_frequencies": key,
        "key_rule": KEY_RULE.format(threshold=threshold),
        "threshold": threshold,
        "accuracy_all_pairs": accuracy,
        "spectra": {name: spec.tolist() for name, spec in spectra.items()},
        "hidden_spectrum_2d": hidden_2d.tolist(),
        "energy_share": energy_share,
        "fit": {"logits_relative_error": logit_error, "logits_fit_accuracy": fit_accuracy,
                "hidden_relative_error": fit_hidden(tables["hidden"], key)},
        "neurons": {"dominant_frequency": dominant.tolist(), "explained": explained.tolist(),
                    "count_per_frequency": np.bincount(dominant, minlength=p // 2 + 1).tolist()},
        "clock": clock_coordinates(tables["E"], key),
    }


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
