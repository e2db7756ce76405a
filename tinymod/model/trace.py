"""One traced forward: a model's named activations over a batch, read off the forward pass
itself (the way TransformerLens's activation cache is read off its model), for the analyses.

The analyses never run the recurrence themselves: what they fit, decompose or project comes
from here, so every analysis sees the same numbers the model computes. (tinymod.model.reference
stays an independent check of the forward pass; this is that forward pass, named.)

Letters: B examples, T tokens, p residues, H hidden units, G gates (1 for the vanilla cell).
Names in the returned dict, t = 1..T:
    U          (p, G*H)  E @ W_ih.T, the table each token reads its input from
    h_t        (B, H)    the state after token t
    pre_t      (B, H)    the vanilla cell's pre-activation U[x_t] + h_{t-1} @ W_hh.T + b_h
    gi_t       (B, G*H)  a gated cell's input projection U[x_t] + b_ih, all gates
    <gate>_t   (B, H)    a gated cell's activated gates: GRU r, z, n; LSTM i, f, g, o
    c_t        (B, H)    the LSTM's cell state
    logits     (B, p)
"""
from tinymod.model import gated, rnn
from tinymod.model.backend import namespace


def trace(params, x, activation="relu"):
    """{name: array} as the module docstring lists them, on the params' backend."""
    xp = namespace(params["E"])
    cell = rnn.cell_of(params)
    logits, cache = rnn.forward(params, x, activation, cell)
    first = x[:, 0]
    U = params["E"] @ params["W_ih"].T                                   # (p, G*H)
    out = {"U": U, "logits": logits}
    if cell == "rnn":
        hs = [xp.take(cache.H1, first, axis=0), *cache.hs[2:]]          # h_1 .. h_T (B, H)
        for t in range(1, x.shape[1] + 1):
            out[f"h_{t}"] = hs[t - 1]
            carried = hs[t - 2] @ params["W_hh"].T if t > 1 else 0
            out[f"pre_{t}"] = xp.take(U, x[:, t - 1], axis=0) + carried + params["b_h"]
        return out
    H = params["W_out"].shape[1]
    # step 1's saved values are per residue (p rows): their first two are the gates
    per_step = [tuple(xp.take(v, first, axis=0) for v in cache.first[:2]), *cache.saved[2:]]
    for t in range(1, x.shape[1] + 1):
        out[f"h_{t}"] = xp.take(cache.H1, first, axis=0) if t == 1 else cache.hs[t]
        out[f"gi_{t}"] = xp.take(U, x[:, t - 1], axis=0) + params["b_ih"]
        saved = per_step[t - 1]
        if cell == "gru":                                               # saved: (r|z, n, gh_n)
            blocks = (saved[0][:, :H], saved[0][:, H:], saved[1])
        else:                                                           # saved: (i|f|g|o, tanh c)
            blocks = tuple(saved[0][:, k * H:(k + 1) * H] for k in range(4))
            out[f"c_{t}"] = xp.take(cache.C1, first, axis=0) if t == 1 else cache.cs[t]
        out.update({f"{g}_{t}": block for g, block in zip(gated.GATES[cell], blocks)})
    return out
