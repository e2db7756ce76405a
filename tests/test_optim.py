"""AdamW against a scalar, hand-written reference of torch.optim.AdamW, and exact resume."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinymod.model.optim import AdamW


def adamw_by_hand(theta, grads, lr, beta1, beta2, eps, wd):
    """One parameter, one float at a time, following torch's documented algorithm."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        theta = theta - lr * wd * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        theta = theta - lr * m_hat / (math.sqrt(v_hat) + eps)
    return theta


@given(st.integers(0, 2**32 - 1), st.integers(1, 8), st.floats(1e-4, 1e-1),
       st.floats(0.0, 2.0), st.sampled_from([(0.9, 0.98), (0.9, 0.999), (0.5, 0.9)]))
def test_adamw_matches_hand_computation(seed, steps, lr, wd, betas):
    rng = np.random.default_rng(seed)
    theta0 = rng.standard_normal(5)
    grads = rng.standard_normal((steps, 5))
    params = {"w": theta0.copy()}
    opt = AdamW(params, lr=lr, betas=betas, eps=1e-8, weight_decay=wd)
    for g in grads:
        opt.step(params, {"w": g})
    expected = [adamw_by_hand(theta0[i], grads[:, i], lr, *betas, 1e-8, wd) for i in range(5)]
    np.testing.assert_allclose(params["w"], expected, rtol=1e-12, atol=1e-14)
    assert opt.t == steps


def test_first_step_moves_each_weight_by_lr_against_its_gradient_sign():
    """With bias correction, step 1 is lr * g / (|g| + eps): a sign step (no decay)."""
    params = {"w": np.zeros(3)}
    AdamW(params, lr=0.01, weight_decay=0.0).step(params, {"w": np.array([2.0, -3.0, 0.5])})
    np.testing.assert_allclose(params["w"], [-0.01, 0.01, -0.01], rtol=1e-7)


def test_weight_decay_is_decoupled():
    """A zero gradient leaves only the decay: theta * (1 - lr * wd)."""
    params = {"w": np.array([1.0, -2.0])}
    AdamW(params, lr=0.1, weight_decay=0.5).step(params, {"w": np.zeros(2)})
    np.testing.assert_allclose(params["w"], [0.95, -1.9], rtol=1e-15)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_state_round_trip_continues_bit_identically(dtype):
    rng = np.random.default_rng(7)
    grads = [{"a": rng.standard_normal((3, 2)).astype(dtype),
              "b": rng.standard_normal(4).astype(dtype)} for _ in range(6)]
    start = {"a": rng.standard_normal((3, 2)).astype(dtype), "b": rng.standard_normal(4).astype(dtype)}

    straight = {k: v.copy() for k, v in start.items()}
    opt = AdamW(straight)
    for g in grads:
        opt.step(straight, g)

    resumed = {k: v.copy() for k, v in start.items()}
    first = AdamW(resumed)
    for g in grads[:3]:
        first.step(resumed, g)
    saved = {k: np.array(v) for k, v in first.state_dict().items()}   # as a checkpoint would
    second = AdamW(resumed)
    second.load_state_dict(saved)
    for g in grads[3:]:
        second.step(resumed, g)

    for k in start:
        assert resumed[k].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(resumed[k], straight[k])
