"""The data (contract 2, docs/contracts.md): every ordered tuple of T residues and its sum mod p.

Shapes: N = p**T tuples, T tokens each; the tuples are in lexicographic order
(row n is the base-p digits of n, most significant first).
"""
from typing import NamedTuple

import numpy as np


class Dataset(NamedTuple):
    x_train: np.ndarray  # (N_train, T) int64
    y_train: np.ndarray  # (N_train,)   int64
    x_test: np.ndarray   # (N_test, T)  int64
    y_test: np.ndarray   # (N_test,)    int64


def all_tuples(p, seq_len=2):
    """All p**seq_len ordered tuples of residues, shape (p**seq_len, seq_len)."""
    if p < 1 or seq_len < 1:
        raise ValueError(f"need p >= 1 and seq_len >= 1, got p={p}, seq_len={seq_len}")
    grids = np.indices((p,) * seq_len).reshape(seq_len, -1)  # (T, N)
    return np.ascontiguousarray(grids.T).astype(np.int64)    # (N, T)


def targets(x, p):
    """(x_1 + ... + x_T) mod p for each row of x (N, T)."""
    return x.sum(axis=1) % p


def split_indices(n, frac, seed):
    """One seeded permutation of range(n): the first round(frac * n) are train, the rest test."""
    perm = np.random.default_rng(seed).permutation(n)
    n_train = round(frac * n)
    return perm[:n_train], perm[n_train:]


def make_dataset(p, seq_len=2, frac=0.3, seed=0):
    """The train/test split of contract 2 (same seed, same split, everywhere)."""
    if not 0.0 < frac < 1.0:
        raise ValueError(f"frac must lie in (0, 1), got {frac}")
    x = all_tuples(p, seq_len)
    y = targets(x, p)
    train, test = split_indices(len(x), frac, seed)
    return Dataset(x[train], y[train], x[test], y[test])


def grid_sums(T, p):
    """(x_1 + ... + x_T) mod p for every tuple of the grid, flattened in C order (N,)."""
    return all_tuples(p, T).sum(axis=1) % p
