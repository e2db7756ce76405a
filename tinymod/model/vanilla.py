"""The vanilla cell (contract 1): its recurrence and its backpropagation through time,
below the readout. `tinymod.model.rnn` dispatches here for `cell = "rnn"`.

Letters: B examples, T tokens per example, p residues, D embedding width, H hidden width.

    h_0 = 0,   h_t = act(E[x_t] @ W_ih.T + h_{t-1} @ W_hh.T + b_h)      t = 1..T

The per-residue shortcut. `E[x_t] @ W_ih.T` is row x_t of the table U = E @ W_ih.T,
which has only p rows, so it is computed once, not once per example. Because h_0 = 0,
h_1 = act(U[x_1] + b_h) is row x_1 of the table H1 = act(U + b_h), and h_1 @ W_hh.T is
row x_1 of C = H1 @ W_hh.T. Only from t = 2 on does the state depend on more than one
token. The backward pass mirrors this: gradients that reach a table row are summed per
residue (a scatter-add) before the small (p, H) matmuls. It is the same maths as the
plain loop in `tinymod.model.reference`, which tests compare it against.
"""
from typing import NamedTuple

from tinymod.model import blocks
from tinymod.model.backend import arange
from tinymod.model.kernels import act_backward, act_backward_scatter, gather_add_act, scatter_add_rows

ACTIVATIONS = ("relu", "tanh")


class Cache(NamedTuple):
    """What the forward pass keeps for backward, and why.

    Only activation outputs are kept: relu' and tanh' are functions of h itself
    ([h > 0] and 1 - h^2), so no pre-activation is stored. U is not kept: its gradient
    flows to E and W_ih through the parameters alone.
    """
    x: object       # (B, T) int tokens
    H1: object      # (p, H) h_1 for each possible first token
    hs: tuple       # by time: hs[t] is h_t (B, H) for t = 2..T; hs[0] (h_0 = 0) and
                    # hs[1] (h_1 = H1[x_1]) are None, never formed per example
    relu: bool
    cell: str = "rnn"


def check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return activation == "relu"


def _rows(xp, x, work):
    """0..B-1 as example indices: from the workspace when there is one (made once per B)."""
    if not work:
        return arange(xp, x.shape[0], x)
    key = ("rows", x.shape[0])
    if key not in work.rows:
        work.rows[key] = arange(xp, x.shape[0], x)
    return work.rows[key]


def hidden(params, x, activation, xp, work=None):
    """h_T (B, H) and the cache: the recurrence, without the readout. With `work`
    (tinymod.model.tail's workspace), the per-example states are written into its buffers."""
    relu = check_activation(activation)
    E, W_ih, W_hh, b_h = params["E"], params["W_ih"], params["W_hh"], params["b_h"]
    T = x.shape[1]
    U = E @ W_ih.T                                   # (p, H) what each token writes in
    # h_0 @ W_hh.T is 0, but the contract computes it, and 0 * NaN or 0 * inf is NaN:
    # keep that term (H,), so a non-finite W_hh is never hidden, even at T = 1
    h0_term = xp.sum(W_hh * 0, axis=1)               # (H,) zeros, or NaN where W_hh is not finite
    pre1 = U + (b_h + h0_term)                       # (p, H) h_0 = 0, so h_1 is per residue
    H1 = xp.maximum(pre1, 0) if relu else xp.tanh(pre1)
    hs = [None, None]                                # h_0, h_1: not per example
    if T == 1:
        h = xp.take(H1, x[:, 0], axis=0)            # (B, H)
    else:
        C = H1 @ W_hh.T                              # (p, H) h_1 @ W_hh.T per first token
        out = work.get("h", (x.shape[0], W_hh.shape[0]), C.dtype) if work else None
        h = gather_add_act(C, x[:, 0], U, x[:, 1], b_h, relu, out)     # h_2 (B, H)
        hs.append(h)
        rows = _rows(xp, x, work)                                       # 0..B-1
        for t in range(2, T):                   # with `work`, every h_t has its buffer
            hw = blocks.per_example(xp, h, W_hh.T, work and work.get("hw", h.shape, h.dtype))     # (B, H)
            out = work.get(f"h{t + 1}", h.shape, h.dtype) if work else None
            h = gather_add_act(hw, rows, U, x[:, t], b_h, relu, out)                        # h_{t+1}
            hs.append(h)
    return h, Cache(x, H1, tuple(hs), relu)


def backward_hidden(params, cache, dh, xp, work=None):
    """The gradients below the readout, from dh = d loss / d h_T (B, H). With `work` (and
    dh one of its buffers), the steps t >= 3 write into its buffers: nothing B-sized is made."""
    x, H1, hs, relu = cache.x, cache.H1, cache.hs, cache.relu
    W_hh = params["W_hh"]
    T = x.shape[1]
    dU = xp.zeros_like(H1)                            # (p, H) d loss / d U, per residue
    db_h = xp.zeros_like(params["b_h"])
    dW_hh = xp.zeros_like(W_hh)
    dpre_buffer = work.get("dpre", dh.shape, dh.dtype) if work and T >= 3 else None
    for t in range(T, 2, -1):                         # t = T .. 3, one row per example
        dpre = act_backward(dh, hs[t], relu, dpre_buffer)    # back through the activation (B, H)
        db_h += xp.sum(dpre, axis=0)                  # back through the bias
        scatter_add_rows(dU, x[:, t - 1], dpre)       # back through the lookup U[x_t]
        dW_hh += blocks.over_examples(xp, dpre, hs[t - 1])  # back through h_{t-1} @ W_hh.T
        dh = blocks.per_example(xp, dpre, W_hh, dh if work else None)   # (B, H), over the old dh
    if T >= 2:
        # t = 2: back through the activation, the bias and both lookups (U[x_2], and
        # C[x_1] with C = H1 @ W_hh.T, h_1 being row x_1 of H1), summed per residue
        dC = xp.zeros_like(H1)                        # (p, H)
        act_backward_scatter(dh, hs[2], relu, x[:, 0], dC, x[:, 1], dU, db_h)
        dW_hh += dC.T @ H1
        dH1 = dC @ W_hh                               # (p, H)
    else:                                             # T = 1, h_T = H1[x_1]: sum per residue
        dH1 = scatter_add_rows(xp.zeros_like(H1), x[:, 0], dh)
    # t = 1, per residue: H1 = act(U + b_h)
    dpre1 = act_backward(dH1, H1, relu)               # (p, H)
    db_h += xp.sum(dpre1, axis=0)
    dU += dpre1
    # back through U = E @ W_ih.T
    dE = dU @ params["W_ih"]                          # (p, D)
    dW_ih = dU.T @ params["E"]                        # (H, D)
    return {"E": dE, "W_ih": dW_ih, "W_hh": dW_hh, "b_h": db_h}
