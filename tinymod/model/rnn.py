"""The model (contract 1, docs/contracts.md): a vanilla RNN, its forward pass and its BPTT;
the gated cells (GRU, LSTM) live in `tinymod.model.gated`, and every public call here takes
`cell` ("rnn", "gru" or "lstm"; by default read from the parameters' names and shapes).

Letters: B examples, T tokens per example, p residues, D embedding width, H hidden width.

    h_0    = 0
    h_t    = act(E[x_t] @ W_ih.T + h_{t-1} @ W_hh.T + b_h)      t = 1..T
    logits = h_T @ W_out.T + b_out

The per-residue shortcut. `E[x_t] @ W_ih.T` is row x_t of the table U = E @ W_ih.T,
which has only p rows, so it is computed once, not once per example. Because h_0 = 0,
h_1 = act(U[x_1] + b_h) is row x_1 of the table H1 = act(U + b_h), and h_1 @ W_hh.T is
row x_1 of C = H1 @ W_hh.T. Only from t = 2 on does the state depend on more than one
token. The backward pass mirrors this: gradients that reach a table row are summed per
residue (a scatter-add) before the small (p, H) matmuls. It is the same maths as the
plain loop in `tinymod.model.reference`, which tests compare it against.
"""
import math
import threading
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np

from tinymod.model import blocks, gated
from tinymod.model.backend import arange, asarray, namespace, to_numpy
from tinymod.model.kernels import (act_backward, act_backward_scatter, gather_add_act, scatter_add_rows,
                             softmax_xent, softmax_xent_rows)

PARAM_NAMES = ("E", "W_ih", "W_hh", "b_h", "W_out", "b_out")          # the vanilla cell's
GATED_NAMES = ("E", "W_ih", "W_hh", "b_ih", "b_hh", "W_out", "b_out")   # the GRU's and the LSTM's
CELLS = ("rnn", *gated.GATES)
ACTIVATIONS = ("relu", "tanh")
DTYPES = ("float32", "float64")


def check_cell(cell):
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    return cell


def param_names(cell="rnn"):
    """The contract's parameter names for a cell, in the order they are drawn."""
    return PARAM_NAMES if check_cell(cell) == "rnn" else GATED_NAMES


def param_shapes(p, d_embed, d_hidden, cell="rnn"):
    """The contract's shapes, by parameter name."""
    D, H = d_embed, d_hidden
    if check_cell(cell) == "rnn":
        return {"E": (p, D), "W_ih": (H, D), "W_hh": (H, H), "b_h": (H,),
                "W_out": (p, H), "b_out": (p,)}
    G = gated.gate_count(cell)
    return {"E": (p, D), "W_ih": (G * H, D), "W_hh": (G * H, H), "b_ih": (G * H,),
            "b_hh": (G * H,), "W_out": (p, H), "b_out": (p,)}


def cell_of(params, cell=None):
    """The cell the parameters belong to: `cell` checked against their names and shapes, or
    read from them (b_h: the vanilla cell; b_ih with 3 or 4 gates: the GRU or the LSTM)."""
    if "b_h" in params:
        found = "rnn"
    else:
        gates = params["W_hh"].shape[0] // max(params["W_hh"].shape[1], 1)
        found = next((c for c in gated.GATES if gated.gate_count(c) == gates), None)
    if found is None or (cell is not None and check_cell(cell) != found):
        raise ValueError(f"the parameters ({', '.join(params)}; W_hh {tuple(params['W_hh'].shape)}) "
                         f"are not those of the {cell or 'known'} cell")
    return found


def init_params(p, d_embed=128, d_hidden=128, seed=0, dtype="float32", xp=np, like=None, cell="rnn"):
    """PyTorch's default initialisation of the same layers, seeded.

    E ~ N(0, 1) (nn.Embedding); every other parameter ~ U(-1/sqrt(H), 1/sqrt(H))
    (nn.RNN, nn.GRU, nn.LSTM and nn.Linear with H inputs, biases too). Drawn in float64 from
    numpy.random.default_rng(seed) in the order of param_names(cell), then cast, so the
    float32 and float64 models start from the same numbers, on every backend: `xp` is the
    array module, and `like` an array whose device the parameters should share.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(d_hidden)
    params = {}
    for name, shape in param_shapes(p, d_embed, d_hidden, cell).items():
        if name == "E":
            value = rng.standard_normal(shape)
        else:
            value = rng.uniform(-bound, bound, shape)
        params[name] = asarray(xp, value.astype(dtype), like=like)
    return params


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


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    return activation == "relu"


def _check_ids(ids, p, what):
    """Kernels index tables with token ids and do no bounds checks: refuse ids outside [0, p)."""
    xp = namespace(ids)
    if ids.shape[0] and (int(xp.min(ids)) < 0 or int(xp.max(ids)) >= p):
        raise ValueError(f"{what} ids must lie in [0, {p}), got {int(xp.min(ids))}..{int(xp.max(ids))}")


def _rows(xp, x, work):
    """0..B-1 as example indices: from the workspace when there is one (made once per B)."""
    if not work:
        return arange(xp, x.shape[0], x)
    key = ("rows", x.shape[0])
    if key not in work.rows:
        work.rows[key] = arange(xp, x.shape[0], x)
    return work.rows[key]


def _fixed_arithmetic(xp):
    """On NumPy, BLAS at one thread and example blocks on tinymod's pool, so the result
    does not depend on the thread count; other backends schedule themselves."""
    return blocks.single_threaded_blas() if xp is np else nullcontext()


def forward(params, x, activation="relu", cell=None):
    """logits (B, p) for tokens x (B, T), and the cache backward needs. `activation` is the
    vanilla cell's; a gated cell has its own (sigmoid and tanh) and ignores it."""
    xp = namespace(params["E"])
    with _fixed_arithmetic(xp):
        return _forward(params, x, activation, xp, cell_of(params, cell))


def _forward(params, x, activation, xp, cell):
    h, cache = _hidden(params, x, activation, xp, cell=cell)
    logits = blocks.per_example(xp, h, params["W_out"].T)   # (B, p)
    logits += params["b_out"]                         # in place: one (B, p) array, not two
    return logits, cache


def weight_norms(params):
    """(the Frobenius norm of all parameters together, {name: each one's norm}), in float64
    on the host."""
    squares = {name: float(np.sum(to_numpy(v).astype(np.float64) ** 2)) for name, v in params.items()}
    return math.sqrt(sum(squares.values())), {name: math.sqrt(s) for name, s in squares.items()}


class _Workspace(threading.local):
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


_workspace = _Workspace()


def _hidden(params, x, activation, xp, work=None, cell="rnn"):
    """h_T (B, H) and the cache: the recurrence, without the readout. With `work`, the
    vanilla cell's per-example states are written into its buffers."""
    _check_ids(x, params["E"].shape[0], "token")
    if cell != "rnn":
        return gated.hidden(params, x, cell, xp)
    relu = _check_activation(activation)
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


def backward(params, cache, dlogits):
    """Gradients of the loss for every parameter, given d loss / d logits (B, p)."""
    xp = namespace(params["E"])
    with _fixed_arithmetic(xp):
        return _backward(params, cache, dlogits, xp)


def _h_T(cache, xp):
    x, H1, hs = cache.x, cache.H1, cache.hs
    return hs[x.shape[1]] if x.shape[1] >= 2 else xp.take(H1, x[:, 0], axis=0)   # (B, H)


def _readout_back(d, h, W_out, dh):
    """One block of examples back through logits = h @ W_out.T + b_out: writes the block's
    dh, returns its shares of dW_out and db_out."""
    np.matmul(d, W_out, out=dh)                       # (n, H)
    return d.T @ h, np.sum(d, axis=0)                 # (p, H), (p,)


def _backward(params, cache, dlogits, xp):
    # back through the readout: logits = h_T @ W_out.T + b_out
    h_T, W_out = _h_T(cache, xp), params["W_out"]
    if xp is np:
        dh = np.empty_like(h_T)                       # (B, H) the dh_next carry
        dW_out, db_out = blocks.add_in_order(blocks.run_in_order(
            lambda lo, hi: _readout_back(dlogits[lo:hi], h_T[lo:hi], W_out, dh[lo:hi]), h_T.shape[0]))
    else:
        dW_out = dlogits.T @ h_T                      # (p, H)
        db_out = xp.sum(dlogits, axis=0)              # (p,)
        dh = dlogits @ W_out                          # (B, H) the dh_next carry
    return _backward_hidden(params, cache, dh, dW_out, db_out, xp)


def _backward_hidden(params, cache, dh, dW_out, db_out, xp, work=None):
    """The gradients below the readout, from dh = d loss / d h_T (B, H). With `work` (and
    dh one of its buffers), the steps t >= 3 write into its buffers: nothing B-sized is made."""
    if isinstance(cache, gated.Cache):
        return {**gated.backward_hidden(params, cache, dh, xp), "W_out": dW_out, "b_out": db_out}
    x, H1, hs, relu = cache
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
    return {"E": dE, "W_ih": dW_ih, "W_hh": dW_hh, "b_h": db_h,
            "W_out": dW_out, "b_out": db_out}


def loss_and_grads(params, x, y, activation="relu", cell=None):
    """Mean softmax cross-entropy of the model on (x, y), and its gradients, for any cell.

    On NumPy the readout, the loss and their backward run fused, block by block of
    examples (tinymod.model.blocks), while a block's logits are still in cache: the (B, p)
    logits are never formed whole. The gradients are bit-identical to forward, then
    softmax_xent, then backward."""
    xp = namespace(params["E"])
    cell = cell_of(params, cell)
    _check_ids(y, params["W_out"].shape[0], "target")
    if xp is not np:
        logits, cache = forward(params, x, activation, cell)
        loss, dlogits = softmax_xent(logits, y)
        return loss, backward(params, cache, dlogits)
    with _fixed_arithmetic(xp):
        work = _workspace
        h, cache = _hidden(params, x, activation, xp, work, cell)
        W_out, b_out = params["W_out"], params["b_out"]
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
            return (total, *_readout_back(dlogits, h[lo:hi], W_out, dh[lo:hi]))

        total, dW_out, db_out = blocks.add_in_order(blocks.run_in_order(block, h.shape[0]))
        return total * inv, _backward_hidden(params, cache, dh, dW_out, db_out, xp, work)


def evaluate(params, x, y, activation="relu", batch_size=None, cell=None):
    """(mean loss, accuracy) of the model on (x, y), in batches to bound memory."""
    xp = namespace(params["E"])
    cell = cell_of(params, cell)
    n = x.shape[0]
    step = batch_size or n
    total_loss, correct = 0.0, 0
    for start in range(0, n, step):
        xb, yb = x[start:start + step], y[start:start + step]
        logits, _ = forward(params, xb, activation, cell)
        _check_ids(yb, logits.shape[1], "target")
        loss, _ = softmax_xent(logits, yb)
        total_loss += loss * xb.shape[0]
        correct += int(xp.count_nonzero(xp.argmax(logits, axis=1) == yb))
    return total_loss / n, correct / n
