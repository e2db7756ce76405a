"""Shared hypothesis strategies: small models and batches (p <= 7, T <= 4, H <= 6)."""
import numpy as np
from hypothesis import strategies as st

from tinymod.model import rnn


@st.composite
def models(draw, dtype="float64", max_t=4, cell="rnn"):
    """(params, x, y, activation): shapes drawn, values from a drawn seed and scale; a
    gated `cell`'s parameters when given (its activation is then None)."""
    p = draw(st.integers(2, 7))
    T = draw(st.integers(1, max_t))
    D = draw(st.integers(1, 5))
    H = draw(st.integers(1, 6))
    B = draw(st.integers(1, 6))
    activation = draw(st.sampled_from(rnn.ACTIVATIONS)) if cell == "rnn" else None
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.floats(0.3, 1.5))
    rng = np.random.default_rng(seed)
    params = {name: (scale * rng.standard_normal(shape)).astype(dtype)
              for name, shape in rnn.param_shapes(p, D, H, cell).items()}
    x = rng.integers(0, p, (B, T))
    y = rng.integers(0, p, B)
    return params, x, y, activation
