"""The traced forward names what the model computes: every state, pre-activation and gate
agrees with the literal reference loops (float64), and the logits are the forward's own."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from tinymod.model import reference, rnn
from tinymod.model.gated import GATES
from tinymod.model.trace import trace


@given(st.sampled_from(["rnn", "gru", "lstm"]), st.sampled_from(["relu", "tanh"]), st.integers(1, 4),
       st.integers(0, 2 ** 16))
def test_every_named_activation_is_the_reference_loops(cell, activation, T, seed):
    p, D, H = 5, 3, 4
    params = rnn.init_params(p, D, H, seed=seed, dtype="float64", cell=cell)
    x = np.random.default_rng(seed).integers(0, p, size=(7, T))
    act = activation if cell == "rnn" else "relu"
    named = trace(params, x, act)
    assert np.array_equal(named["logits"], rnn.forward(params, x, act, cell)[0])
    if cell == "rnn":
        logits, (_, hs, _) = reference.forward_plain(params, x, act)
        for t in range(1, T + 1):
            np.testing.assert_allclose(named[f"h_{t}"], hs[t], rtol=1e-12, atol=1e-12)
            want = params["E"][x[:, t - 1]] @ params["W_ih"].T + hs[t - 1] @ params["W_hh"].T + params["b_h"]
            np.testing.assert_allclose(named[f"pre_{t}"], want, rtol=1e-12, atol=1e-12)
        return
    logits, (_, steps, _) = reference.forward_gated_plain(params, x, cell)
    np.testing.assert_allclose(named["logits"], logits, rtol=1e-12, atol=1e-12)
    for t in range(1, T + 1):
        h, c, gates = steps[t]
        np.testing.assert_allclose(named[f"h_{t}"], h, rtol=1e-12, atol=1e-12)
        for g, value in zip(GATES[cell], gates):
            np.testing.assert_allclose(named[f"{g}_{t}"], value, rtol=1e-12, atol=1e-12)
        if cell == "lstm":
            np.testing.assert_allclose(named[f"c_{t}"], c, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(named[f"gi_{t}"], params["E"][x[:, t - 1]] @ params["W_ih"].T + params["b_ih"],
                                   rtol=1e-12, atol=1e-12)


def test_the_names_are_the_documented_ones():
    x = np.array([[0, 1, 2]])
    for cell, gates in (("rnn", ("pre",)), ("gru", ("gi", "r", "z", "n")), ("lstm", ("gi", "i", "f", "g", "o", "c"))):
        named = trace(rnn.init_params(3, 2, 2, cell=cell, dtype="float64"), x)
        assert set(named) == {"U", "logits", *(f"{n}_{t}" for n in ("h", *gates) for t in (1, 2, 3))}, cell


def test_token_ids_outside_p_are_refused():
    with pytest.raises(ValueError, match="token"):
        trace(rnn.init_params(3, 2, 2, dtype="float64"), np.array([[0, 3]]))
