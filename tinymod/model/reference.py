"""The contract's equations as a literal loop: the twin of `tinymod.rnn`'s fast path.

Letters: B examples, T tokens, p residues, D embedding width, H hidden width.
Slow on purpose (every step does every matmul per example); tests assert that
`rnn.forward` and `rnn.backward` agree with these, and the lectures derive BPTT here.
"""
import numpy as np


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
