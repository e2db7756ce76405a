"""Gated cells (contract 1, docs/contracts.md): the GRU and the LSTM exactly as
torch.nn.GRU and torch.nn.LSTM compute them, their forward pass and their BPTT.

Letters: B examples, T tokens, p residues, D embedding width, H hidden width, G gates (3 for
the GRU: r, z, n; 4 for the LSTM: i, f, g, o), stacked in that order along the first axis
of W_ih (G*H, D), W_hh (G*H, H), b_ih and b_hh (G*H,). sigma is the logistic sigmoid.

    gi_t = E[x_t] @ W_ih.T + b_ih          (B, G*H) what token x_t writes into every gate
    gh_t = h_{t-1} @ W_hh.T + b_hh         (B, G*H) what the state writes into every gate
  GRU   r = sigma(gi_r + gh_r)    z = sigma(gi_z + gh_z)    n = tanh(gi_n + r * gh_n)
        h_t = (1 - z) * n + z * h_{t-1}
  LSTM  i, f, o = sigma(gi + gh) in blocks i, f, o    g = tanh(gi_g + gh_g)
        c_t = f * c_{t-1} + i * g              h_t = o * tanh(c_t)
  h_0 = c_0 = 0; logits = h_T @ W_out.T + b_out, as for the vanilla cell (tinymod.model.rnn).

The per-residue shortcut is the vanilla cell's: gi_t is row x_t of the table
U = E @ W_ih.T + b_ih (p, G*H); h_0 = 0 makes the first step a function of x_1 alone, so
h_1 (and c_1) are tables over the p residues, and h_1 @ W_hh.T at step 2 is row x_1 of
C = H1 @ W_hh.T. Backward sums what reaches a table row per residue (a scatter-add) before
the small (p, G*H) matmuls. `tinymod.model.reference` holds the same maths as a literal loop.
"""
from typing import NamedTuple

import numpy as np

from tinymod.model import blocks, gate_kernels
from tinymod.model.backend import device, namespace
from tinymod.model.kernels import register, scatter_add_rows

GATES = {"gru": ("r", "z", "n"), "lstm": ("i", "f", "g", "o")}


def gate_count(cell):
    """G, the pre-activation blocks a step computes: 3 for the GRU, 4 for the LSTM, 1 for the
    vanilla cell (`"rnn"`); any other name is refused."""
    if cell != "rnn" and cell not in GATES:
        raise ValueError(f"cell must be one of {('rnn', *GATES)}, got {cell!r}")
    return len(GATES.get(cell, ("h",)))


class Cache(NamedTuple):
    """What the forward pass keeps for backward, and why: each step's activated gates (their
    derivatives are functions of the gate values themselves), the GRU's gh_n (the reset gate
    multiplies it) and the LSTM's tanh(c_t) and c_t (the forget gate's gradient is c_{t-1})."""
    x: object       # (B, T) int tokens
    cell: str
    H1: object      # (p, H) h_1 for each possible first token
    C1: object      # (p, H) c_1 likewise (LSTM; None for the GRU)
    first: tuple    # step 1's saved values, per residue (p rows)
    hs: tuple       # hs[t] = h_t (B, H) for t = 2..T; hs[0], hs[1] are None (per residue)
    cs: tuple       # cs[t] = c_t likewise (LSTM)
    saved: tuple    # saved[t]: step t's saved values (B rows), t = 2..T


def _sigmoid(xp, z):
    with np.errstate(over="ignore"):          # exp(-z) = inf for z << 0 gives exactly 0
        return 1 / (1 + xp.exp(-z))


def _gru_step(xp, gi, gh, h_prev, c_prev):
    """One GRU step from its gate inputs gi, gh (n, 3H): (h, None, saved = (r|z, n, gh_n))."""
    H = gi.shape[1] // 3
    rz = _sigmoid(xp, gi[:, :2 * H] + gh[..., :2 * H])                # (n, 2H) r | z
    gh_n = gh[..., 2 * H:]
    n = xp.tanh(gi[:, 2 * H:] + rz[:, :H] * gh_n)                      # (n, H)
    z = rz[:, H:]
    return (1 - z) * n + z * h_prev, None, (rz, n, gh_n)


def _lstm_step(xp, gi, gh, h_prev, c_prev):
    """One LSTM step from its gate inputs gi, gh (n, 4H): (h, c, saved = (i|f|g|o, tanh c))."""
    H = gi.shape[1] // 4
    pre = gi + gh                                                      # (n, 4H) i | f | g | o
    gates = _sigmoid(xp, pre)
    gates[:, 2 * H:3 * H] = xp.tanh(pre[:, 2 * H:3 * H])              # g is a tanh
    i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
    c = f * c_prev + i * g
    tc = xp.tanh(c)
    return o * tc, c, (gates, tc)


def _step(xp, cell, gi, gh, h_prev, c_prev):
    """One step of `cell` from its gate inputs gi, gh (n, G*H): (h, c, saved). h_prev and
    c_prev are (n, H) or 0 at step 1."""
    return (_gru_step if cell == "gru" else _lstm_step)(xp, gi, gh, h_prev, c_prev)


def _gru_step_back(xp, saved, dh, dc, h_prev, c_prev):
    """Back through one GRU step: (d gi, d gh (n, 3H), z * dh (what reaches h_prev directly),
    None)."""
    rz, n, gh_n = saved
    H = n.shape[1]
    r, z = rz[:, :H], rz[:, H:]
    dpre_n = dh * (1 - z) * (1 - n * n)                                # through tanh
    dpre_rz = xp.concat([dpre_n * gh_n * r * (1 - r),                  # r multiplies gh_n
                         dh * (h_prev - n) * z * (1 - z)], axis=1)
    dgi = xp.concat([dpre_rz, dpre_n], axis=1)
    dgh = xp.concat([dpre_rz, dpre_n * r], axis=1)
    return dgi, dgh, dh * z, None


def _lstm_step_back(xp, saved, dh, dc, h_prev, c_prev):
    """Back through one LSTM step: (d gi, d gh (n, 4H), None (its state reaches h_t only
    through the gates), d c_prev)."""
    gates, tc = saved
    H = tc.shape[1]
    i, f, g, o = (gates[:, k * H:(k + 1) * H] for k in range(4))
    dc = dh * o * (1 - tc * tc) + (0 if dc is None else dc)           # h = o * tanh(c)
    dpre = xp.concat([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                      dc * i * (1 - g * g), dh * tc * o * (1 - o)], axis=1)
    return dpre, dpre, None, dc * f


def _step_back(xp, cell, saved, dh, dc, h_prev, c_prev):
    """Back through one step of `cell`: (d gi, d gh (n, G*H), what reaches h_prev directly,
    d c_prev)."""
    return (_gru_step_back if cell == "gru" else _lstm_step_back)(xp, saved, dh, dc, h_prev, c_prev)


def gate_step_portable(U, G, uidx, gidx, b, Hp, Cp, hidx, cell, work=None, t=2):
    """One step t >= 2 of `cell` over B rows, from its tables: gi = U[uidx], gh = G[gidx] + b,
    the previous state Hp[hidx] (and Cp[hidx]); an index of None takes the rows as they are.
    (h, c, saved). At t = 2 the tables are per residue (C, H1, C1 by the first token). `work`
    (tinymod.model.tail's workspace), where the numba path keeps step t's buffers, is ignored
    here."""
    xp = namespace(U, G)
    rows = lambda table, idx: table if idx is None or table is None else xp.take(table, idx, axis=0)
    return _step(xp, cell, xp.take(U, uidx, axis=0), rows(G, gidx) + b, rows(Hp, hidx), rows(Cp, hidx))


def _buffers(work, tag):
    return (lambda name, shape, dtype: work.get(f"{tag}{name}", shape, dtype)) if work else gate_kernels.fresh


def _gate_step_fast(U, G, uidx, gidx, b, Hp, Cp, hidx, cell, work=None, t=2):
    every = lambda idx: np.arange(uidx.shape[0]) if idx is None else idx
    step = gate_kernels.gru_step if cell == "gru" else gate_kernels.lstm_step
    return step(U, uidx, G, every(gidx), b, Hp if cell == "gru" else Cp, every(hidx), _buffers(work, f"{cell}{t}"))


def gate_step_back_portable(dh, dc, saved, Hp, Cp, hidx, dU, uidx, db, cell, work=None, t=2):
    """Back through one step t >= 2 of `cell`, its rows' previous state Hp[hidx] (Cp[hidx]):
    (d gh (B, G*H), what reaches h_prev directly, d c_prev); in place, dU[uidx] += d gi and
    db += the sum of d gh over the rows. (`work` as for gate_step.)"""
    xp = namespace(dh, dU)
    rows = lambda table: table if hidx is None or table is None else xp.take(table, hidx, axis=0)
    dgi, dgh, direct, dc = _step_back(xp, cell, saved, dh, dc, rows(Hp), rows(Cp))
    scatter_add_rows(dU, uidx, dgi)                    # back through the lookup U[x_t]
    db += xp.sum(dgh, axis=0)
    return dgh, direct, dc


def _gate_step_back_fast(dh, dc, saved, Hp, Cp, hidx, dU, uidx, db, cell, work=None, t=2):
    hidx = np.arange(uidx.shape[0]) if hidx is None else hidx
    buffer = _buffers(work, f"{cell}back{t % 2}")      # d c_prev of step t is read by step t - 1
    if cell == "gru":
        return gate_kernels.gru_step_back(saved, dh, Hp, hidx, dU, uidx, db, buffer)
    return gate_kernels.lstm_step_back(saved, dh, dc, Cp, hidx, dU, uidx, db, buffer)


gate_step = register(gate_step_portable, fast=_gate_step_fast)
gate_step_back = register(gate_step_back_portable, fast=_gate_step_back_fast)


def hidden(params, x, cell, xp, work=None):
    """h_T (B, H) and the cache: the recurrence, without the readout. With `work`
    (tinymod.model.tail's workspace) each step's arrays are its buffers."""
    E, W_ih, W_hh, b_ih, b_hh = (params[k] for k in ("E", "W_ih", "W_hh", "b_ih", "b_hh"))
    T = x.shape[1]
    U = E @ W_ih.T + b_ih                              # (p, G*H) what each token writes in
    # h_0 @ W_hh.T is 0, but NaN or inf in W_hh must not be hidden: keep the term (G*H,)
    h0_term = xp.sum(W_hh * 0, axis=1)
    H1, C1, first = _step(xp, cell, U, b_hh + h0_term, 0.0, 0.0)     # step 1, per residue
    hs, cs, saved = [None, None], [None, None], [None, None]
    if T == 1:
        return xp.take(H1, x[:, 0], axis=0), Cache(x, cell, H1, C1, first, tuple(hs), tuple(cs), tuple(saved))
    C = H1 @ W_hh.T                                    # (p, G*H) h_1 @ W_hh.T per first token
    h, c = H1, C1                                      # at t = 2, rows x_1 of the per-residue tables
    for t in range(2, T + 1):
        G, idx = (C, x[:, 0]) if t == 2 else (blocks.per_example(xp, h, W_hh.T), None)
        h, c, step = gate_step(U, G, x[:, t - 1], idx, b_hh, h, c, idx, cell, work, t)
        hs.append(h)
        cs.append(c)
        saved.append(step)
    return h, Cache(x, cell, H1, C1, first, tuple(hs), tuple(cs), tuple(saved))


def backward_hidden(params, cache, dh, xp, work=None):
    """The gradients below the readout, from dh = d loss / d h_T (B, H)."""
    x, cell, H1, C1, first, hs, cs, saved = cache
    W_hh = params["W_hh"]
    T = x.shape[1]
    dU = xp.zeros((H1.shape[0], W_hh.shape[0]), dtype=H1.dtype, device=device(H1))   # (p, G*H) d loss / d U
    dW_hh, db_hh = xp.zeros_like(W_hh), xp.zeros_like(params["b_hh"])
    dc = None
    for t in range(T, 2, -1):                          # t = T .. 3, one row per example
        dgh, direct, dc = gate_step_back(dh, dc, saved[t], hs[t - 1], cs[t - 1], None, dU, x[:, t - 1], db_hh,
                                         cell, work, t)
        dW_hh += blocks.over_examples(xp, dgh, hs[t - 1])        # back through h_{t-1} @ W_hh.T
        dh = blocks.per_example(xp, dgh, W_hh)
        if direct is not None:
            dh += direct
    zeros = lambda: xp.zeros_like(H1)
    dC1 = None
    if T >= 2:
        # t = 2: h_1 and c_1 are rows x_1 of the per-residue tables: sum per residue
        dgh, direct, dc = gate_step_back(dh, dc, saved[2], H1, C1, x[:, 0], dU, x[:, 1], db_hh, cell, work)
        dC = scatter_add_rows(xp.zeros_like(dU), x[:, 0], dgh)  # (p, G*H) through C = H1 @ W_hh.T
        dW_hh += dC.T @ H1
        dH1 = dC @ W_hh
        if direct is not None:
            scatter_add_rows(dH1, x[:, 0], direct)
        if dc is not None:
            dC1 = scatter_add_rows(zeros(), x[:, 0], dc)
    else:                                              # T = 1, h_T = H1[x_1]
        dH1 = scatter_add_rows(zeros(), x[:, 0], dh)
    dgi, dgh, _, _ = _step_back(xp, cell, first, dH1, dC1, 0.0, 0.0)   # step 1, per residue
    dU += dgi
    db_hh += xp.sum(dgh, axis=0)
    return {"E": dU @ params["W_ih"], "W_ih": dU.T @ params["E"], "W_hh": dW_hh,
            "b_ih": xp.sum(dU, axis=0), "b_hh": db_hh}
