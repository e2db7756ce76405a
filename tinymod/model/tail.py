"""The fused tail of a training step on NumPy: the readout, the softmax cross-entropy and
their backward, block by block of examples (tinymod.model.blocks) while a block's logits are
still in cache, so the (B, p) logits are never formed whole; and the per-thread workspace
whose buffers a warm step reuses instead of allocating.

Letters: B examples, p residues, H hidden width.
"""
import threading

import numpy as np

from tinymod.model import blocks
from tinymod.model.kernels import softmax_xent_rows


class Workspace(threading.local):
    """Per-thread buffers that `loss_and_grads` reuses from call to call (NumPy with numba),
    so a warm step with T >= 2 allocates no (B, H) array (each h_t has its own buffer; (B,)
    index vectors remain): no page faults from fresh arrays, from any plain call. Nothing in them escapes a call; `forward` never uses them."""

    def __init__(self):
        self.buffers, self.rows = {}, {}

    def get(self, name, shape, dtype):
        key = (name, shape, str(dtype))
        if key not in self.buffers:
            if len(self.buffers) > 32:                # a new problem size: start afresh
                self.buffers.clear()
            self.buffers[key] = np.empty(shape, dtype)
        return self.buffers[key]


workspace = Workspace()


def readout_back(d, h, W_out, dh):
    """One block of examples back through logits = h @ W_out.T + b_out: writes the block's
    dh, returns its shares of dW_out and db_out."""
    np.matmul(d, W_out, out=dh)                       # (n, H)
    return d.T @ h, np.sum(d, axis=0)                 # (p, H), (p,)


def loss_and_dh(h, y, W_out, b_out, work):
    """(summed loss, dW_out, db_out, dh) of logits = h @ W_out.T + b_out under the mean
    softmax cross-entropy over the B rows of h (B, H), fused block by block; dh is one of
    `work`'s buffers."""
    B, p = h.shape[0], W_out.shape[0]
    inv = 1.0 / B
    dh = work.get("dh", h.shape, h.dtype)                     # (B, H)
    logits_all = work.get("logits", (B, p), h.dtype)          # (B, p), by blocks
    zy_all = work.get("zy", (B,), np.float64)

    def block(lo, hi):
        logits = logits_all[lo:hi]
        np.matmul(h[lo:hi], W_out.T, out=logits)  # (n, p) as blocks.matmul_rows does
        logits += b_out
        # shifted in place, exp'd in place, then turned into the gradient in place
        total, dlogits = softmax_xent_rows(logits, y[lo:hi], inv, (logits, zy_all[lo:hi]))
        return (total, *readout_back(dlogits, h[lo:hi], W_out, dh[lo:hi]))

    total, dW_out, db_out = blocks.add_in_order(blocks.run_in_order(block, B))
    return total * inv, dW_out, db_out, dh
