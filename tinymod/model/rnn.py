"""The model (contract 1, docs/contracts.md): the cells' schema (parameter names, shapes,
initialisation) and the one dispatch of forward, BPTT, loss and evaluation by cell. The
vanilla cell's recurrence lives in `tinymod.model.vanilla`, the GRU's and the LSTM's in
`tinymod.model.gated`, the fused readout and loss of a NumPy step in `tinymod.model.tail`;
every public call here takes `cell` ("rnn", "gru" or "lstm"; by default read from the
parameters' names and shapes).

Letters: B examples, T tokens per example, p residues, D embedding width, H hidden width.

    h_0    = 0
    h_t    = act(E[x_t] @ W_ih.T + h_{t-1} @ W_hh.T + b_h)      t = 1..T
    logits = h_T @ W_out.T + b_out

Every cell computes h_1 per residue (h_0 = 0), so only from t = 2 on does the state depend
on more than one token (tinymod.model.vanilla explains the shortcut).
"""
import math
from contextlib import nullcontext

import numpy as np

from tinymod.model import blocks, gated, tail, vanilla
from tinymod.model.backend import asarray, namespace, to_numpy
from tinymod.model.kernels import softmax_xent, softmax_xent_rows

PARAM_NAMES = ("E", "W_ih", "W_hh", "b_h", "W_out", "b_out")          # the vanilla cell's
GATED_NAMES = ("E", "W_ih", "W_hh", "b_ih", "b_hh", "W_out", "b_out")   # the GRU's and the LSTM's
CELLS = ("rnn", *gated.GATES)
ACTIVATIONS = vanilla.ACTIVATIONS                                     # the vanilla cell's
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


def _check_ids(ids, p, what):
    """Kernels index tables with token ids and do no bounds checks: refuse ids outside [0, p)."""
    xp = namespace(ids)
    if ids.shape[0] and (int(xp.min(ids)) < 0 or int(xp.max(ids)) >= p):
        raise ValueError(f"{what} ids must lie in [0, {p}), got {int(xp.min(ids))}..{int(xp.max(ids))}")


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


def _hidden(params, x, activation, xp, work=None, cell="rnn"):
    """h_T (B, H) and the cache of the cell's recurrence, without the readout."""
    _check_ids(x, params["E"].shape[0], "token")
    if cell == "rnn":
        return vanilla.hidden(params, x, activation, xp, work)
    return gated.hidden(params, x, cell, xp, work)


def _backward_hidden(params, cache, dh, dW_out, db_out, xp, work=None):
    """Every gradient, from dh = d loss / d h_T (B, H) and the readout's own."""
    below = (vanilla.backward_hidden(params, cache, dh, xp, work) if cache.cell == "rnn" else
             gated.backward_hidden(params, cache, dh, xp, work))
    return {**below, "W_out": dW_out, "b_out": db_out}


def backward(params, cache, dlogits):
    """Gradients of the loss for every parameter, given d loss / d logits (B, p)."""
    xp = namespace(params["E"])
    with _fixed_arithmetic(xp):
        return _backward(params, cache, dlogits, xp)


def _h_T(cache, xp):
    x, H1, hs = cache.x, cache.H1, cache.hs
    return hs[x.shape[1]] if x.shape[1] >= 2 else xp.take(H1, x[:, 0], axis=0)   # (B, H)


def _backward(params, cache, dlogits, xp):
    # back through the readout: logits = h_T @ W_out.T + b_out
    h_T, W_out = _h_T(cache, xp), params["W_out"]
    if xp is np:
        dh = np.empty_like(h_T)                       # (B, H) the dh_next carry
        dW_out, db_out = blocks.add_in_order(blocks.run_in_order(
            lambda lo, hi: tail.readout_back(dlogits[lo:hi], h_T[lo:hi], W_out, dh[lo:hi]), h_T.shape[0]))
    else:
        dW_out = dlogits.T @ h_T                      # (p, H)
        db_out = xp.sum(dlogits, axis=0)              # (p,)
        dh = dlogits @ W_out                          # (B, H) the dh_next carry
    return _backward_hidden(params, cache, dh, dW_out, db_out, xp)


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
        h, cache = _hidden(params, x, activation, xp, tail.workspace, cell)
        loss, dW_out, db_out, dh = tail.loss_and_dh(h, y, params["W_out"], params["b_out"], tail.workspace)
        return loss, _backward_hidden(params, cache, dh, dW_out, db_out, xp, tail.workspace)


def evaluate(params, x, y, activation="relu", batch_size=None, cell=None):
    """(mean loss, accuracy) of the model on (x, y), in batches to bound memory."""
    xp = namespace(params["E"])
    cell = cell_of(params, cell)
    n = x.shape[0]
    step = batch_size or n
    total_loss, correct = 0.0, 0
    for start in range(0, n, step):
        xb, yb = x[start:start + step], y[start:start + step]
        loss, right = _scores(params, xb, yb, activation, cell, xp)
        total_loss += loss * xb.shape[0]
        correct += right
    return total_loss / n, correct / n


def _scores(params, x, y, activation, cell, xp):
    """(mean loss, correct count) of one batch: forward, then softmax_xent, as `forward`
    computes them; on NumPy into the workspace's buffers (no page faults from fresh
    arrays: an evaluation of 6,385 pairs went from about 10 ms to 4), the same numbers."""
    if xp is not np:
        logits, _ = forward(params, x, activation, cell)
        _check_ids(y, logits.shape[1], "target")
        loss, _ = softmax_xent(logits, y)
        return loss, int(xp.count_nonzero(xp.argmax(logits, axis=1) == y))
    work, (n, p) = tail.workspace, (x.shape[0], params["W_out"].shape[0])
    with _fixed_arithmetic(xp):
        h, _ = _hidden(params, x, activation, xp, work, cell)
        logits = blocks.per_example(xp, h, params["W_out"].T, work.get("eval_logits", (n, p), h.dtype))
    logits += params["b_out"]
    _check_ids(y, p, "target")
    right = int(np.count_nonzero(np.argmax(logits, axis=1) == y))
    inv = 1.0 / n
    total, _ = softmax_xent_rows(logits, y, inv, (work.get("eval_z", (n, p), h.dtype), work.get("eval_zy", (n,), np.float64)))
    return total * inv, right
