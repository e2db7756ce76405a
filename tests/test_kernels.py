"""Every registered numba kernel against its portable twin, on hypothesis-drawn inputs with
NaN and inf mixed in, and the model's loss non-finite exactly when the plain loop's is."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from strategies import models
from tinymod.model import gated, kernels, reference, rnn

pytestmark = pytest.mark.skipif(not kernels.numba_enabled(), reason="numba is not importable")

TOL = {np.float32: dict(rtol=1e-5, atol=1e-4), np.float64: dict(rtol=1e-12, atol=1e-11)}
SPECIALS = (np.nan, np.inf, -np.inf)


@st.composite
def values(draw, dtype, shape, specials):
    """Bounded floats in [-10, 10], with NaN and inf dropped into some entries when
    `specials`."""
    x = draw(hnp.arrays(dtype, shape, elements=st.floats(-10, 10, width=np.finfo(dtype).bits)))
    if specials and x.size:
        n = draw(st.integers(1, min(3, x.size)))
        for _ in range(n):
            x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from(SPECIALS))
    return x


@st.composite
def cases(draw, name):
    """(args, in-place argument positions) for one call of kernel `name`."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    specials = draw(st.booleans())
    B, H, p = draw(st.integers(1, 30)), draw(st.integers(1, 9)), draw(st.integers(1, 11))
    idx = draw(hnp.arrays(np.int64, (B,), elements=st.integers(0, p - 1)))
    relu = draw(st.booleans())
    rows = draw(values(dtype, (B, H), specials))
    table = draw(values(dtype, (p, H), specials))
    h = np.maximum(rows[::-1], 0) if relu else np.tanh(rows[::-1])
    if name == "scatter_add_rows":
        return (table, idx, rows), (0,)
    if name == "gather_add_act":                   # with the buffer the numba path writes into
        return (rows, np.arange(B)[::-1].copy(), table, idx, table[0] / 3, relu, np.empty_like(rows)), ()
    if name == "act_backward":                     # with the buffer the numba path writes into
        return (rows, h, relu, np.empty_like(rows)), ()
    if name == "act_backward_scatter":
        return (rows, h, relu, idx, table, idx[::-1].copy(), table[::-1].copy(), table[0].copy()), (4, 6, 7)
    if name == "softmax_xent_rows":
        logits = draw(values(dtype, (B, p), specials))
        work = (np.empty_like(logits), np.empty(B))          # the fused step's buffers
        return (logits, idx, draw(st.sampled_from([1.0, 1 / 3, 1e-4])), work), ()
    if name in ("gate_step", "gate_step_back"):
        return _gate_case(draw, name, dtype, specials, B, H, p, idx)
    raise AssertionError(f"no inputs drawn for kernel {name}: add them here")


def _gate_case(draw, name, dtype, specials, B, H, p, idx):
    """A GRU or LSTM step t >= 2: at t = 2 its tables are per residue (rows by token), later
    dense per example (index None); backward gets the forward's saved values."""
    cell = draw(st.sampled_from(["gru", "lstm"]))
    G = 3 if cell == "gru" else 4
    dense = draw(st.booleans())
    U, b = draw(values(dtype, (p, G * H), specials)), draw(values(dtype, (G * H,), specials))
    rows = B if dense else p
    table, Hp, Cp = (draw(values(dtype, (rows, w), specials)) for w in (G * H, H, H))
    Cp = Cp if cell == "lstm" else None
    prev = None if dense else idx[::-1].copy()
    args = (U, table, idx, prev, b, Hp, Cp, prev, cell)
    if name == "gate_step":
        return args, ()
    with np.errstate(all="ignore"):
        _, _, saved = gated.gate_step_portable(*args)
    dh = draw(values(dtype, (B, H), specials))
    dc = draw(values(dtype, (B, H), specials)) if cell == "lstm" and draw(st.booleans()) else None
    dU, db = draw(values(dtype, (p, G * H), False)), draw(values(dtype, (G * H,), False))
    return (dh, dc, saved, Hp, Cp, prev, dU, idx, db, cell), (6, 8)


def test_every_kernel_has_inputs_here():
    assert set(kernels.KERNELS) == {"scatter_add_rows", "gather_add_act", "act_backward",
                                    "act_backward_scatter", "softmax_xent_rows", "gate_step", "gate_step_back"}


@pytest.mark.parametrize("name", sorted(kernels.KERNELS))
@given(data=st.data())
def test_kernel_agrees_with_its_portable_twin(name, data):
    kernel = kernels.KERNELS[name]
    args, in_place = data.draw(cases(name))
    outs = []
    for fn in (kernel.fast, kernel.portable):
        call = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        with np.errstate(all="ignore"):                              # NaN and inf on purpose
            result = fn(*call)
        outs.append([result] + [call[i] for i in in_place])
    dtype = args[0].dtype.type
    for fast, twin in zip(flat(outs[0]), flat(outs[1]), strict=True):
        if fast is None:
            assert twin is None
            continue
        for f, t in [(fast, twin)]:
            f, t = np.asarray(f), np.asarray(t)
            assert f.dtype == t.dtype or f.ndim == 0
            np.testing.assert_array_equal(np.isnan(f), np.isnan(t))      # NaN where the twin has it
            np.testing.assert_array_equal(np.isposinf(f), np.isposinf(t))
            np.testing.assert_array_equal(np.isneginf(f), np.isneginf(t))
            np.testing.assert_allclose(f, t, **TOL[dtype])


def flat(results):
    """Every array in a kernel's results, nested tuples opened (a gated step's saved values)."""
    for r in results:
        if isinstance(r, tuple):
            yield from flat(r)
        else:
            yield r


@given(models(), st.sampled_from(["E", "W_ih", "W_hh", "b_h", "W_out", "b_out"]), st.data())
def test_loss_is_non_finite_exactly_when_the_plain_loop_says_so(model, name, data):
    """A NaN or inf anywhere in the parameters: the kernels' loss is finite exactly when
    the plain per-example loop's is, for relu and tanh, float32 and float64, every T."""
    params, x, y, activation = model
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    params = {k: v.astype(dtype) for k, v in params.items()}
    target = params[name]
    target.flat[data.draw(st.integers(0, target.size - 1))] = data.draw(st.sampled_from(SPECIALS))
    with np.errstate(all="ignore"):
        loss, _ = rnn.loss_and_grads(params, x, y, activation)
        plain, _ = kernels.softmax_xent_rows_portable(reference.forward_plain(params, x, activation)[0], y, 1.0)
    assert np.isfinite(loss) == np.isfinite(plain), (loss, plain)


def test_a_nan_in_w_hh_is_not_hidden_by_the_relu():
    params = rnn.init_params(7, 4, 5, seed=0, dtype="float64")
    params["W_hh"][0, 0] = np.nan
    x = np.array([[1, 2], [3, 4]])
    loss, _ = rnn.loss_and_grads(params, x, np.array([3, 0]))
    assert np.isnan(loss)


@given(st.sampled_from([np.float32, np.float64]), st.integers(1, 40), st.integers(1, 13),
       st.floats(0.1, 1e4), st.integers(0, 2**32 - 1))
def test_softmax_xent_is_exact_for_large_logits(dtype, B, p, scale, seed):
    """Agrees with a float64 log-sum-exp, even for logits ~1e4."""
    rng = np.random.default_rng(seed)
    logits = (scale * rng.standard_normal((B, p))).astype(dtype)
    y = rng.integers(0, p, B)
    loss, d = kernels.softmax_xent(logits, y)
    assert np.isfinite(loss) and np.all(np.isfinite(d)) and d.dtype == dtype
    z = logits.astype(np.float64)
    m = z.max(axis=1)
    exact = np.mean(m + np.log(np.exp(z - m[:, None]).sum(axis=1)) - z[np.arange(B), y])
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss == pytest.approx(exact, rel=rtol, abs=rtol)
    np.testing.assert_allclose(d.sum(axis=1), 0, atol=1e-6)   # softmax rows sum to 1


def test_uniform_logits_give_log_p():
    loss, d = kernels.softmax_xent(np.zeros((4, 113)), np.arange(4))
    assert loss == pytest.approx(np.log(113), rel=1e-14)


def test_token_ids_outside_the_table_are_refused():
    params = rnn.init_params(7, 4, 5, seed=0, dtype="float64")
    for x, y in ((np.array([[1, 7]]), np.array([1])), (np.array([[-1, 2]]), np.array([1])),
                 (np.array([[1, 2]]), np.array([9]))):
        with pytest.raises(ValueError, match=r"must lie in \[0, 7\)"):
            rnn.loss_and_grads(params, x, y)
