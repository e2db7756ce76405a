"""The inner loops BLAS does not do, as numba kernels beside their plain NumPy twins.

Letters: B examples, H hidden units, p residues (rows of a per-residue table).

Each kernel is registered once, in `KERNELS`, beside its twin: the *portable* version,
plain array-API code that NumPy, CuPy and any standard library run. The public function
`register` returns picks the numba kernel for NumPy arrays when numba is importable and
`TINYMOD_NUMBA` is not "0", and the portable twin otherwise (CuPy arrays always take it).
Twins are the reference: written once, plainly, and tests iterate over the registry to
compare each kernel with its twin, NaN and inf included. No kernel uses `fastmath` or
`prange`, so each one does the same arithmetic as its twin, up to the order of float
summation, and a NaN or inf goes where the twin sends it (a relu written `v if v > 0 else
0` would turn NaN into 0; these are written `0 if v <= 0 else v`).

Compiled kernels are cached on disk (`cache=True`). numba writes the cache beside this
file, or in the user's cache folder when the install folder is read-only; if no folder
is writable at all the kernels compile in memory instead, quietly.
"""
import os

import numpy as np

from typing import Callable, NamedTuple

from tinymod.model.backend import arange, namespace


_numba = None        # the numba module once loaded, False when unavailable or switched off
_compiled: dict[Callable, Callable] = {}       # plain kernel function -> its numba dispatcher


def numba_enabled():
    """Whether kernels run compiled; numba is imported on first use, not on import, so
    `tinymod --help` and analysis-only imports stay fast."""
    global _numba
    if _numba is None:
        _numba = False
        if os.environ.get("TINYMOD_NUMBA", "1") != "0":
            try:
                import numba
                _numba = numba
            except ImportError:
                pass
    return _numba is not False


def compiled(fn):
    """numba.njit(fn) with an on-disk cache where one can be written, in memory otherwise."""
    if fn not in _compiled:
        try:
            # nogil: tinymod.model.blocks runs kernels on blocks of examples in threads;
            # error_model "numpy": x / 0 is inf or NaN as in NumPy, with no check in the loop,
            # which numba would otherwise keep from vectorising (a sigmoid loop 8x slower)
            _compiled[fn] = _numba.njit(cache=True, nogil=True, error_model="numpy")(fn)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            _compiled[fn] = _numba.njit(error_model="numpy")(fn)
    return _compiled[fn]


def _use_numba(*arrays):
    return namespace(*arrays) is np and numba_enabled()


class Kernel(NamedTuple):
    name: str
    fast: Callable        # the numba path (NumPy arrays only)
    portable: Callable    # the array-API twin: the reference, and what CuPy runs


KERNELS: dict[str, Kernel] = {}


def register(portable, loop=None, fast=None):
    """Register a kernel with its portable twin, once, and return the dispatcher: the
    compiled `loop` (or a `fast` function that calls compiled loops) for NumPy arrays
    when numba is on, the twin otherwise. Array arguments decide: the first two."""
    name = portable.__name__.removesuffix("_portable")
    fast = fast or (lambda *args: compiled(loop)(*args))
    KERNELS[name] = Kernel(name, fast, portable)

    def dispatch(*args):
        arrays = [a for a in args[:2] if hasattr(a, "shape")]
        return (fast if _use_numba(*arrays) else portable)(*args)
    dispatch.__name__, dispatch.__doc__ = name, portable.__doc__
    return dispatch


# --- scatter-add of rows: out[idx[i]] += vals[i] -------------------------------------

def scatter_add_rows_portable(out, idx, vals):
    """out (p, H) += the rows of vals (B, H) added into the rows idx (B,) names; in place.

    Written as a one-hot matmul, onehot(idx).T @ vals: plain array-API code that runs on
    any backend (the standard has no scatter-add), at the cost of B * p * H multiply-adds.
    A matmul multiplies every value by the zeros of the other rows too, and 0 * inf is
    NaN, so non-finite values go round it: counted per cell, then placed as the loop would
    leave them (NaN if any NaN or both infinities, else the infinity).
    """
    xp = namespace(out, vals)
    onehot = xp.astype(idx[:, None] == arange(xp, out.shape[0], out)[None, :], vals.dtype)  # (B, p)
    finite = xp.isfinite(vals)
    if bool(xp.all(finite)):
        out += onehot.T @ vals
        return out
    out += onehot.T @ xp.where(finite, vals, xp.zeros_like(vals))

    def count(mask):
        return onehot.T @ xp.astype(mask, vals.dtype)                    # (p, H)
    nan, pos, neg = count(xp.isnan(vals)), count(vals == xp.inf), count(vals == -xp.inf)
    full = lambda v: xp.full_like(out, v)
    special = xp.where((nan > 0) | ((pos > 0) & (neg > 0)), full(xp.nan),
                       xp.where(pos > 0, full(xp.inf), xp.where(neg > 0, full(-xp.inf), full(0.0))))
    out += special
    return out


def _scatter_add_rows(out, idx, vals):
    for i in range(vals.shape[0]):
        r = idx[i]
        for j in range(vals.shape[1]):
            out[r, j] += vals[i, j]
    return out


scatter_add_rows = register(scatter_add_rows_portable, _scatter_add_rows)


# --- forward step: h = act(first[i1] + second[i2] + bias) -----------------------------

def gather_add_act_portable(first, i1, second, i2, bias, relu, out=None):
    """act(first[i1] + second[i2] + bias), (B, H): two row lookups, a bias, relu or tanh.
    At t = 2 both are per-residue tables; later, `first` is the dense h @ W_hh.T with
    i1 = 0..B-1. (`out`, a buffer the numba kernel writes into, is ignored here: the
    array API has no out= arguments.)"""
    xp = namespace(first, second)
    pre = xp.take(first, i1, axis=0) + xp.take(second, i2, axis=0) + bias   # (B, H)
    return xp.maximum(pre, 0) if relu else xp.tanh(pre)


def _gather_add_act(first, i1, second, i2, bias, relu, out):
    for i in range(out.shape[0]):
        r1, r2 = i1[i], i2[i]
        for j in range(out.shape[1]):
            v = first[r1, j] + second[r2, j] + bias[j]
            if relu:
                out[i, j] = 0 if v <= 0 else v           # NaN stays NaN, as in np.maximum
            else:
                out[i, j] = np.tanh(v)
    return out


def _gather_add_act_fast(first, i1, second, i2, bias, relu, out=None):
    if out is None:
        out = np.empty((i1.shape[0], first.shape[1]), first.dtype)   # (B, H)
    compiled(_gather_add_act)(first, i1, second, i2, bias, relu, out)
    return out


gather_add_act = register(gather_add_act_portable, fast=_gather_add_act_fast)


# --- activation backward: dpre = dh * act'(pre), from h = act(pre) -------------------

def act_backward_portable(dh, h, relu, out=None):
    """Back through the activation, using only its output h: relu' = [h > 0], tanh' = 1 - h^2.
    `out`, a buffer the numba path writes into (and returns), is ignored here."""
    xp = namespace(dh, h)
    return xp.where(h > 0, dh, xp.zeros_like(dh)) if relu else dh * (1 - h * h)


def _act_backward_fast(dh, h, relu, out=None):
    return compiled(_act_backward)(dh, h, relu, np.empty_like(dh) if out is None else out)


def _act_backward(dh, h, relu, out):
    for i in range(dh.shape[0]):
        for j in range(dh.shape[1]):
            if relu:
                out[i, j] = dh[i, j] if h[i, j] > 0 else 0
            else:
                out[i, j] = dh[i, j] * (1 - h[i, j] * h[i, j])
    return out


act_backward = register(act_backward_portable, fast=_act_backward_fast)


# --- the step-2 backward, fused: activation, bias and both table lookups -----------------

def act_backward_scatter_portable(dh, h, relu, i1, d_first, i2, d_second, d_bias):
    """In place: dpre = dh * act'(h); d_first[i1] += dpre; d_second[i2] += dpre;
    d_bias += sum over examples of dpre. Nothing (B, H)-sized is kept."""
    xp = namespace(dh, h)
    dpre = act_backward_portable(dh, h, relu)
    scatter_add_rows_portable(d_first, i1, dpre)
    scatter_add_rows_portable(d_second, i2, dpre)
    d_bias += xp.sum(dpre, axis=0)


def _act_backward_scatter(dh, h, relu, i1, d_first, i2, d_second, d_bias):
    # the bias gradient, summed row by row in the input's dtype as NumPy's axis-0 sum does,
    # so the fused step gives the same bits as the unfused one did
    acc = np.zeros(dh.shape[1], dh.dtype)
    for i in range(dh.shape[0]):
        r1, r2 = i1[i], i2[i]
        for j in range(dh.shape[1]):
            if relu:
                g = dh[i, j] if h[i, j] > 0 else 0
            else:
                g = dh[i, j] * (1 - h[i, j] * h[i, j])
            d_first[r1, j] += g
            d_second[r2, j] += g
            acc[j] += g
    for j in range(dh.shape[1]):
        d_bias[j] += acc[j]


act_backward_scatter = register(act_backward_scatter_portable, _act_backward_scatter)


# --- softmax cross-entropy and its gradient -----------------------------------------

def softmax_xent_rows_portable(logits, y, scale, work=None):
    """Cross-entropy of softmax(logits) (n, p) against y (n,), summed over the rows, and
    its gradient times `scale`: (softmax - onehot(y)) * scale. With scale = 1/B for the
    B examples of a step, the rows of a block give exactly their share of the step.

    Stable for any finite logits: each row is shifted by its maximum before exp. `work`,
    buffers (z (n, p), zy (n,)) the numba path writes into and returns the gradient in,
    is ignored here.
    """
    xp = namespace(logits)
    p = logits.shape[1]
    z = logits - xp.max(logits, axis=1, keepdims=True)            # (n, p), max 0
    lse = xp.log(xp.sum(xp.exp(z), axis=1, keepdims=True))        # (n, 1)
    onehot = y[:, None] == arange(xp, p, logits)[None, :]          # (n, p) bool
    total = xp.sum(lse[:, 0] - xp.sum(xp.where(onehot, z, xp.zeros_like(z)), axis=1))
    dlogits = (xp.exp(z - lse) - xp.astype(onehot, logits.dtype)) * scale   # (n, p)
    return float(total), dlogits


def _shift_rows(logits, y, z, zy):
    # z (n, p): logits minus their row max; zy (n,): z at the target
    for i in range(logits.shape[0]):
        m = logits[i, 0]
        for j in range(1, logits.shape[1]):
            if logits[i, j] > m:
                m = logits[i, j]
        for j in range(logits.shape[1]):
            z[i, j] = logits[i, j] - m
        zy[i] = z[i, y[i]]


def _normalise_rows(e, zy, y, scale):
    n, p = e.shape
    total = 0.0
    for i in range(n):
        s = 0.0
        for j in range(p):
            s += e[i, j]
        total += np.log(s) - zy[i]                # -log softmax at the target
        row = scale / s
        for j in range(p):
            e[i, j] *= row                        # softmax * scale
        e[i, y[i]] -= scale                       # minus onehot * scale
    return total


def _softmax_xent_rows_fast(logits, y, scale, work=None):
    # exp is left to NumPy, whose exp is vectorised; numba's calls libm per element
    z, zy = work or (np.empty_like(logits), np.empty(logits.shape[0], np.float64))
    compiled(_shift_rows)(logits, y, z, zy)
    e = np.exp(z, out=z)                          # (n, p) in place
    total = compiled(_normalise_rows)(e, zy, y, scale)   # e becomes the scaled gradient
    return float(total), e


softmax_xent_rows = register(softmax_xent_rows_portable, fast=_softmax_xent_rows_fast)


def softmax_xent(logits, y):
    """Mean cross-entropy of softmax(logits) (B, p) against y (B,), and d loss / d logits."""
    inv = 1.0 / logits.shape[0]
    total, dlogits = softmax_xent_rows(logits, y, inv)
    return total * inv, dlogits
