"""The real Fourier basis of Z_p and spectra: projecting residue-indexed axes onto it,
energy per frequency (1-D and over pairs of residues), shares, and the design matrix of
cos/sin terms that every fit uses.

Letters: p residues, K = floor(p/2) frequencies (k = 0..K), w_k = 2 pi k / p, H hidden units.

The basis has p orthonormal rows over the residues n = 0..p-1: the constant 1/sqrt(p); then,
for k = 1..ceil(p/2)-1, sqrt(2/p) cos(w_k n) and sqrt(2/p) sin(w_k n); and, when p is even,
the Nyquist row cos(pi n)/sqrt(p) (its sine is zero). Projecting a residue-indexed axis onto
it gives coefficients whose squares, summed per frequency, are that axis's energy spectrum
(Parseval: the spectrum sums to the squared norm).
"""
from typing import NamedTuple

import numpy as np

from tinymod.model.backend import asarray, namespace


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


def frequency_shares(spec):
    """Each frequency's share of the non-constant energy (k >= 1); zeros if there is none."""
    spec, xp = _float(spec)
    total = xp.sum(spec[1:])
    out = xp.zeros_like(spec)
    if float(total) > 0:
        out[1:] = spec[1:] / total
    return out


def energy_shares_at(spectra, totals, freqs):
    """Each component's share of its non-constant energy at the frequencies `freqs`."""
    freqs = list(freqs)
    return {name: float(np.sum(spectra[name][freqs]) / totals[name]) if totals[name] > 0 else 0.0
            for name in spectra}


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


def hidden_spectrum(energy_2d):
    """A 1-D view of the hidden state's 2-D spectrum: at k >= 1 the energy at (k, 0), (0, k)
    and (k, k); at 0 the constant. Other pairs count only in the total."""
    K = energy_2d.shape[0] - 1
    k = np.arange(1, K + 1)
    return np.concatenate([[energy_2d[0, 0]], energy_2d[k, 0] + energy_2d[0, k] + energy_2d[k, k]])
