"""Every numba kernel against its NumPy twin, on hypothesis-drawn inputs."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinymod import kernels

pytestmark = pytest.mark.skipif(not kernels.numba_enabled(), reason="numba is not importable")

TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


@st.composite
def rows_and_index(draw, dtype):
    """vals (B, H), a table (p, H) and idx (B,) into it, values bounded in [-10, 10]."""
    B, H, p = draw(st.integers(1, 40)), draw(st.integers(1, 9)), draw(st.integers(1, 11))
    elements = st.floats(-10, 10, width=np.finfo(dtype).bits)
    vals = draw(hnp.arrays(dtype, (B, H), elements=elements))
    table = draw(hnp.arrays(dtype, (p, H), elements=elements))
    idx = draw(hnp.arrays(np.int64, (B,), elements=st.integers(0, p - 1)))
    return vals, table, idx


dtypes = st.sampled_from([np.float32, np.float64])


@given(dtypes.flatmap(lambda dt: st.tuples(st.just(dt), rows_and_index(dt))))
def test_scatter_add_rows(case):
    dtype, (vals, table, idx) = case
    fast = kernels.scatter_add_rows(table.copy(), idx, vals)
    twin = kernels.scatter_add_rows_numpy(table.copy(), idx, vals)
    np.testing.assert_allclose(fast, twin, **TOL[dtype])


@given(dtypes.flatmap(lambda dt: st.tuples(st.just(dt), rows_and_index(dt))), st.booleans())
def test_gather_add_act(case, relu):
    dtype, (first, table, idx) = case
    bias = table[0] / 3
    rows = np.arange(len(first))[::-1]
    fast = kernels.gather_add_act(first, rows, table, idx, bias, relu)
    twin = kernels.gather_add_act_numpy(first, rows, table, idx, bias, relu)
    assert fast.dtype == twin.dtype == dtype
    np.testing.assert_allclose(fast, twin, **TOL[dtype])


@given(dtypes.flatmap(lambda dt: st.tuples(st.just(dt), rows_and_index(dt))), st.booleans())
def test_act_backward_scatter(case, relu):
    dtype, (dh, table, idx) = case
    h = np.maximum(dh[::-1], 0) if relu else np.tanh(dh[::-1])
    other = idx[::-1].copy()
    outs = []
    for fn in (kernels.act_backward_scatter, kernels.act_backward_scatter_numpy):
        first, second, bias = table.copy(), table[::-1].copy(), table[0].copy()
        fn(dh, h, relu, idx, first, other, second, bias)
        outs.append((first, second, bias))
    for fast, twin in zip(*outs):
        assert fast.dtype == dtype
        np.testing.assert_allclose(fast, twin, rtol=TOL[dtype]["rtol"], atol=10 * TOL[dtype]["atol"])


@given(dtypes.flatmap(lambda dt: st.tuples(st.just(dt), rows_and_index(dt))), st.booleans())
def test_act_backward(case, relu):
    dtype, (dh, _, _) = case
    h = np.maximum(dh[::-1], 0) if relu else np.tanh(dh[::-1])
    fast = kernels.act_backward(dh, h, relu)
    twin = kernels.act_backward_numpy(dh, h, relu)
    np.testing.assert_allclose(fast, twin, **TOL[dtype])


@given(dtypes, st.integers(1, 40), st.integers(1, 13), st.floats(0.1, 1e4), st.integers(0, 2**32 - 1))
def test_softmax_xent(dtype, B, p, scale, seed):
    """Agrees with the twin and with a float64 log-sum-exp, even for logits ~1e4."""
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal((B, p))).astype(dtype)
    y = rng.integers(0, p, B)
    loss, d = kernels.softmax_xent(logits, y)
    twin_loss, twin_d = kernels.softmax_xent_numpy(logits, y)
    assert np.isfinite(loss) and np.all(np.isfinite(d)) and d.dtype == dtype
    np.testing.assert_allclose(d, twin_d, **TOL[dtype])
    z = logits.astype(np.float64)
    m = z.max(axis=1)
    exact = np.mean(m + np.log(np.exp(z - m[:, None]).sum(axis=1)) - z[np.arange(B), y])
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss == pytest.approx(exact, rel=rtol, abs=rtol)
    assert twin_loss == pytest.approx(exact, rel=rtol, abs=rtol)
    np.testing.assert_allclose(d.sum(axis=1), 0, atol=1e-6)   # softmax rows sum to 1


def test_uniform_logits_give_log_p():
    loss, d = kernels.softmax_xent(np.zeros((4, 113)), np.arange(4))
    assert loss == pytest.approx(np.log(113), rel=1e-14)
