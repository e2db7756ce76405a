"""The contract's equations as a literal loop: the twin of `tinymod.model.rnn`'s fast path.

Letters: B examples, T tokens, p residues, D embedding width, H hidden width.
Slow on purpose (every step does every matmul per example); tests assert that
`rnn.forward` and `rnn.backward` agree with these, and the lectures derive BPTT here.
"""
import numpy as np

from tinymod.model.gated import gate_count


def _act(pre, relu):
    return np.maximum(pre, 0) if relu else np.tanh(pre)


def forward_plain(params, x, activation="relu"):
    """logits (B, p) and the cache (x, [h_0 .. h_T], relu), step by step."""
    relu = activation == "relu"
    B, T = x.shape
    h = np.zeros((B, params["W_hh"].shape[0]), params["E"].dtype)     # h_0 = 0 (B, H)
    hs = [h]
    for t in range(T):
        pre = params["E"][x[:, t]] @ params["W_ih"].T + h @ params["W_hh"].T + params["b_h"]
        h = _act(pre, relu)                                             # (B, H)
        hs.append(h)
    logits = h @ params["W_out"].T + params["b_out"]                   # (B, p)
    return logits, (x, hs, relu)


def backward_plain(params, cache, dlogits):
    """The same loop run backwards: every gradient accumulates with +=."""
    x, hs, relu = cache
    T = x.shape[1]
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    # back through the readout
    grads["W_out"] += dlogits.T @ hs[T]
    grads["b_out"] += dlogits.sum(axis=0)
    dh = dlogits @ params["W_out"]                                      # (B, H)
    for t in range(T, 0, -1):
        # back through the activation: relu' = [h > 0], tanh' = 1 - h^2
        dpre = dh * (hs[t] > 0) if relu else dh * (1 - hs[t] ** 2)
        grads["b_h"] += dpre.sum(axis=0)
        # back through E[x_t] @ W_ih.T
        grads["W_ih"] += dpre.T @ params["E"][x[:, t - 1]]
        np.add.at(grads["E"], x[:, t - 1], dpre @ params["W_ih"])
        # back through h_{t-1} @ W_hh.T
        grads["W_hh"] += dpre.T @ hs[t - 1]
        dh = dpre @ params["W_hh"]                                      # dh_next
    return grads


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _split(array, G):
    """PyTorch's stacked gate blocks, as a list: W_ih (G*H, D) -> G arrays (H, D)."""
    return np.split(array, G, axis=0)


def forward_gated_plain(params, x, cell):
    """logits (B, p) and the cache of a GRU or an LSTM, torch.nn.GRU's and torch.nn.LSTM's
    equations gate by gate, every step per example."""
    G = gate_count(cell)
    W_i, W_h = _split(params["W_ih"], G), _split(params["W_hh"], G)
    b_i, b_h = _split(params["b_ih"], G), _split(params["b_hh"], G)
    B, T = x.shape
    h = np.zeros((B, params["W_hh"].shape[1]), params["E"].dtype)     # h_0 = 0 (B, H)
    c = np.zeros_like(h)                                                # c_0 = 0
    steps = [(h, c, None)]
    for t in range(T):
        e = params["E"][x[:, t]]                                        # (B, D)
        gi = [e @ W.T + b for W, b in zip(W_i, b_i)]                    # per gate (B, H)
        gh = [h @ W.T + b for W, b in zip(W_h, b_h)]
        if cell == "gru":
            r = _sigmoid(gi[0] + gh[0])
            z = _sigmoid(gi[1] + gh[1])
            n = np.tanh(gi[2] + r * gh[2])
            gates = (r, z, n, gh[2])
            h = (1 - z) * n + z * h
        else:
            i, f = _sigmoid(gi[0] + gh[0]), _sigmoid(gi[1] + gh[1])
            g, o = np.tanh(gi[2] + gh[2]), _sigmoid(gi[3] + gh[3])
            gates = (i, f, g, o)
            c = f * c + i * g
            h = o * np.tanh(c)
        steps.append((h, c, gates))
    logits = h @ params["W_out"].T + params["b_out"]                   # (B, p)
    return logits, (x, steps, cell)


def backward_gated_plain(params, cache, dlogits):
    """The same loop run backwards, gate by gate: every gradient accumulates with +=."""
    x, steps, cell = cache
    G = gate_count(cell)
    T = x.shape[1]
    W_i, W_h = _split(params["W_ih"], G), _split(params["W_hh"], G)
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    dW_i, dW_h = _split(grads["W_ih"], G), _split(grads["W_hh"], G)    # views: += lands in grads
    db_i, db_h = _split(grads["b_ih"], G), _split(grads["b_hh"], G)
    grads["W_out"] += dlogits.T @ steps[T][0]
    grads["b_out"] += dlogits.sum(axis=0)
    dh = dlogits @ params["W_out"]                                      # (B, H)
    dc = np.zeros_like(dh)
    for t in range(T, 0, -1):
        h_prev, c_prev, _ = steps[t - 1]
        _, c, gates = steps[t]
        if cell == "gru":
            r, z, n, gh_n = gates
            dn = dh * (1 - z) * (1 - n ** 2)                            # d pre-activation of n
            dr = dn * gh_n * r * (1 - r)
            dz = dh * (h_prev - n) * z * (1 - z)
            d_in, d_hid = [dr, dz, dn], [dr, dz, dn * r]
            dh_prev = dh * z
        else:
            i, f, g, o = gates
            tc = np.tanh(c)
            dc = dc + dh * o * (1 - tc ** 2)
            d_in = d_hid = [dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                            dc * i * (1 - g ** 2), dh * tc * o * (1 - o)]
            dc = dc * f                                                 # d c_{t-1}
            dh_prev = np.zeros_like(dh)
        e = params["E"][x[:, t - 1]]
        for k in range(G):
            dW_i[k] += d_in[k].T @ e
            db_i[k] += d_in[k].sum(axis=0)
            np.add.at(grads["E"], x[:, t - 1], d_in[k] @ W_i[k])
            dW_h[k] += d_hid[k].T @ h_prev
            db_h[k] += d_hid[k].sum(axis=0)
            dh_prev = dh_prev + d_hid[k] @ W_h[k]
        dh = dh_prev
    return grads
