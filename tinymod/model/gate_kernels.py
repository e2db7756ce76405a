"""The gated cells' step, fused: numba loops for the GRU's and the LSTM's gate arithmetic,
forward and backward, one pass over the examples' rows for all gates, where NumPy made a
dozen passes over (B, G*H) arrays. Their twins are `tinymod.model.gated`'s plain steps
(`gate_step_portable`, `gate_step_back_portable`), registered with them there.

The same numbers, bit for bit, as the twins on NumPy: the transcendental functions (exp,
tanh) are left to NumPy, called on whole buffers between the loops (numba's would call
libm per element and round differently), and every loop does the twin's arithmetic in the
twin's order and dtype (`one` is 1 in the arrays' dtype, so float32 stays float32). Sums
over examples run row by row, as NumPy's axis-0 sum does. Letters as in gated.py: B rows,
H hidden units, gate blocks r|z|n (GRU) and i|f|g|o (LSTM) along the columns.

Each loop reads its rows through index arrays: gi = U[uidx], gh = G[gidx] + b, the previous
state Hp[hidx] (Cp[hidx]); at t = 2 they are per-residue tables indexed by tokens, later the
dense per-example arrays indexed 0..B-1.
"""
import numpy as np

from tinymod.model import blocks
from tinymod.model.kernels import compiled


# --- GRU ---------------------------------------------------------------------------------------

def _gru_pre(U, uidx, G, gidx, b, rz, ghn):
    # rz = -(gi + gh) for r|z (exp comes next); ghn = gh_n, kept for the reset gate
    H = ghn.shape[1]
    for i in range(rz.shape[0]):
        u, g = uidx[i], gidx[i]
        for j in range(2 * H):
            rz[i, j] = -(U[u, j] + (G[g, j] + b[j]))
        for j in range(H):
            ghn[i, j] = G[g, 2 * H + j] + b[2 * H + j]


def _gru_mid(U, uidx, rz, ghn, n, one):
    # rz = sigmoid, from exp(-pre); n = gi_n + r * gh_n (tanh comes next)
    H = n.shape[1]
    for i in range(n.shape[0]):
        u = uidx[i]
        for j in range(2 * H):
            rz[i, j] = one / (one + rz[i, j])
        for j in range(H):
            n[i, j] = U[u, 2 * H + j] + rz[i, j] * ghn[i, j]


def _gru_out(rz, n, Hp, hidx, h, one):
    H = n.shape[1]
    for i in range(n.shape[0]):
        k = hidx[i]
        for j in range(H):
            z = rz[i, H + j]
            h[i, j] = (one - z) * n[i, j] + z * Hp[k, j]


def fresh(name, shape, dtype):
    """A buffer made for one call; a workspace's `get` (tinymod.model.tail) reuses them."""
    return np.empty(shape, dtype)


def gru_step(U, uidx, G, gidx, b, Hp, hidx, buffer=fresh):
    """(h, None, saved = (r|z, n, gh_n)): gated.py's GRU step, fused. `buffer(name, shape,
    dtype)` gives the arrays it writes (names unique to this step)."""
    B, H = uidx.shape[0], Hp.shape[1]
    one = U.dtype.type(1)
    rz, ghn, n, h = (buffer(name, (B, w), U.dtype) for name, w in (("rz", 2 * H), ("ghn", H), ("n", H), ("h", H)))
    def block(lo, hi):                          # rows lo..hi, all gates, while in cache
        u, r = uidx[lo:hi], rz[lo:hi]
        compiled(_gru_pre)(U, u, G, gidx[lo:hi], b, r, ghn[lo:hi])
        with np.errstate(over="ignore"):          # exp(-z) = inf for z << 0 gives exactly 0
            np.exp(r, out=r)
        compiled(_gru_mid)(U, u, r, ghn[lo:hi], n[lo:hi], one)
        np.tanh(n[lo:hi], out=n[lo:hi])
        compiled(_gru_out)(r, n[lo:hi], Hp, hidx[lo:hi], h[lo:hi], one)
    blocks.run(block, B)
    return h, None, (rz, n, ghn)


def _gru_back(rz, n, ghn, dh, Hp, hidx, one, dgh, dn, direct):
    # dgh = d gh (r|z|n, the n block times r), dn = d gi's n block, direct = z * dh
    H = n.shape[1]
    for i in range(n.shape[0]):
        k = hidx[i]
        for j in range(H):
            r, z, nn, d = rz[i, j], rz[i, H + j], n[i, j], dh[i, j]
            dpre_n = d * (one - z) * (one - nn * nn)                 # through tanh
            dgh[i, j] = dpre_n * ghn[i, j] * r * (one - r)           # r multiplies gh_n
            dgh[i, H + j] = d * (Hp[k, j] - nn) * z * (one - z)
            dgh[i, 2 * H + j] = dpre_n * r
            dn[i, j] = dpre_n
            direct[i, j] = d * z


def _scatter_sum(dgh, dn, dU, uidx, db):
    # dU[uidx] += d gi: the columns of dgh, the last dn.shape[1] of them from dn when dn is
    # given (the GRU's n block); db += the sum of dgh's rows, in row order as NumPy's axis-0 sum
    acc = np.zeros(dgh.shape[1], dgh.dtype)
    W = dgh.shape[1] - dn.shape[1]
    for i in range(dgh.shape[0]):
        u = uidx[i]
        for j in range(W):
            dU[u, j] += dgh[i, j]
        for j in range(dn.shape[1]):
            dU[u, W + j] += dn[i, j]
        for j in range(dgh.shape[1]):
            acc[j] += dgh[i, j]
    for j in range(dgh.shape[1]):
        db[j] += acc[j]


def gru_step_back(saved, dh, Hp, hidx, dU, uidx, db, buffer=fresh):
    """(d gh (B, 3H), z * dh, None), with dU[uidx] += d gi and db += the sum of d gh."""
    rz, n, ghn = saved
    dgh = buffer("dgh", (n.shape[0], 3 * n.shape[1]), n.dtype)
    dn, direct = buffer("dn", n.shape, n.dtype), buffer("direct", n.shape, n.dtype)
    blocks.run(lambda lo, hi: compiled(_gru_back)(rz[lo:hi], n[lo:hi], ghn[lo:hi], dh[lo:hi], Hp, hidx[lo:hi],
                                                  n.dtype.type(1), dgh[lo:hi], dn[lo:hi], direct[lo:hi]), n.shape[0])
    compiled(_scatter_sum)(dgh, dn, dU, uidx, db)      # one pass, in row order
    return dgh, direct, None


# --- LSTM --------------------------------------------------------------------------------------

def _lstm_pre(U, uidx, G, gidx, b, gates, gpre):
    # gates = -(gi + gh) (exp comes next; its g block is replaced after), gpre = the g block's
    # pre (tanh comes next). Negation is exact: -(-v) is v.
    H = gpre.shape[1]
    for i in range(gates.shape[0]):
        u, g = uidx[i], gidx[i]
        for j in range(4 * H):
            gates[i, j] = -(U[u, j] + (G[g, j] + b[j]))
        for j in range(H):
            gpre[i, j] = -gates[i, 2 * H + j]


def _lstm_cell(gates, gpre, Cp, hidx, c, one):
    # i, f, o = sigmoid from exp(-pre); g = tanh(pre); c = f * c_prev + i * g
    H = c.shape[1]
    for i in range(c.shape[0]):
        k = hidx[i]
        for j in range(4 * H):
            gates[i, j] = one / (one + gates[i, j])
        for j in range(H):
            gates[i, 2 * H + j] = gpre[i, j]
            c[i, j] = gates[i, H + j] * Cp[k, j] + gates[i, j] * gpre[i, j]


def _lstm_out(gates, tc, h):
    H = h.shape[1]
    for i in range(h.shape[0]):
        for j in range(H):
            h[i, j] = gates[i, 3 * H + j] * tc[i, j]


def lstm_step(U, uidx, G, gidx, b, Cp, hidx, buffer=fresh):
    """(h, c, saved = (i|f|g|o, tanh c)): gated.py's LSTM step, fused."""
    B, H = uidx.shape[0], Cp.shape[1]
    gates = buffer("gates", (B, 4 * H), U.dtype)
    gpre, c, tc, h = (buffer(name, (B, H), U.dtype) for name in ("gpre", "c", "tc", "h"))
    def block(lo, hi):                          # rows lo..hi, all gates, while in cache
        g, gp = gates[lo:hi], gpre[lo:hi]
        compiled(_lstm_pre)(U, uidx[lo:hi], G, gidx[lo:hi], b, g, gp)
        with np.errstate(over="ignore"):           # i|f and o; the g block is replaced next
            for ifo in (g[:, :2 * H], g[:, 3 * H:]):
                np.exp(ifo, out=ifo)
        np.tanh(gp, out=gp)
        compiled(_lstm_cell)(g, gp, Cp, hidx[lo:hi], c[lo:hi], U.dtype.type(1))
        np.tanh(c[lo:hi], out=tc[lo:hi])
        compiled(_lstm_out)(g, tc[lo:hi], h[lo:hi])
    blocks.run(block, B)
    return h, c, (gates, tc)


def _lstm_back(gates, tc, dh, dc_in, has_dc, Cp, hidx, one, dgh, dcp):
    # dgh = d gh = d gi (i|f|g|o), dcp = d c_prev
    H = tc.shape[1]
    zero = one - one
    for i in range(tc.shape[0]):
        k = hidx[i]
        for j in range(H):
            ig, fg, gg, og = gates[i, j], gates[i, H + j], gates[i, 2 * H + j], gates[i, 3 * H + j]
            t, d = tc[i, j], dh[i, j]
            dc = d * og * (one - t * t) + (dc_in[i, j] if has_dc else zero)     # h = o * tanh(c)
            dgh[i, j] = dc * gg * ig * (one - ig)
            dgh[i, H + j] = dc * Cp[k, j] * fg * (one - fg)
            dgh[i, 2 * H + j] = dc * ig * (one - gg * gg)
            dgh[i, 3 * H + j] = d * t * og * (one - og)
            dcp[i, j] = dc * fg


def lstm_step_back(saved, dh, dc, Cp, hidx, dU, uidx, db, buffer=fresh):
    """(d gh (B, 4H), None, d c_prev), with dU[uidx] += d gi (= d gh) and db += its sum.
    `buffer` names d c_prev's array for the step, as the next step reads the previous one."""
    gates, tc = saved
    dgh, dcp = buffer("dgh", gates.shape, gates.dtype), buffer("dcp", tc.shape, tc.dtype)
    dc = dh if dc is None else dc                  # (read only when it is given)
    has_dc = dc is not dh
    blocks.run(lambda lo, hi: compiled(_lstm_back)(gates[lo:hi], tc[lo:hi], dh[lo:hi], dc[lo:hi], has_dc, Cp,
                                                   hidx[lo:hi], tc.dtype.type(1), dgh[lo:hi], dcp[lo:hi]), tc.shape[0])
    compiled(_scatter_sum)(dgh, dgh[:, :0], dU, uidx, db)      # one pass, in row order
    return dgh, None, dcp
