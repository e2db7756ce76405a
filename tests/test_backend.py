"""One copy of the maths on every backend: the shared path run through array_api_strict
on a non-default device (where any hidden conversion to NumPy raises) agrees with NumPy.
With --backend cupy on a GPU the same tests run against CuPy (`make gpu-check`)."""
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import models
from tinymod.analysis import ablate, fourier
from tinymod.model import backend, optim, rnn

BACKEND = os.environ.get("TINYMOD_TEST_BACKEND", "strict")   # "cupy" in make gpu-check
strict = pytest.importorskip("array_api_strict") if BACKEND == "strict" else None


def target():
    """(xp, an array on the target device) for the backend under test."""
    if BACKEND == "cupy":
        xp = backend.get("cupy")
        return xp, xp.zeros(1)
    return strict, strict.asarray([0.0], device=strict.Device("device1"))


def put(value, dtype=None):
    xp, like = target()
    return backend.asarray(xp, np.asarray(value), dtype=dtype, like=like)


def close(a, b, dtype):
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == "float64" else dict(rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(backend.to_numpy(a), backend.to_numpy(b), **tol)


def test_hidden_conversions_really_fail():
    if BACKEND != "strict":
        pytest.skip("array_api_strict only")
    with pytest.raises(RuntimeError, match="NumPy"):
        np.asarray(put([1.0, 2.0]))
    assert backend.to_numpy(put([1.0, 2.0])).tolist() == [1.0, 2.0]


@pytest.mark.parametrize("dtype", rnn.DTYPES)
@given(model=models())
def test_forward_backward_and_loss_agree(dtype, model):
    params, x, y, activation = model
    params = {k: v.astype(dtype) for k, v in params.items()}
    other = {k: put(v) for k, v in params.items()}
    xs, ys = put(x), put(y)
    logits, cache = rnn.forward(params, x, activation)
    logits_b, cache_b = rnn.forward(other, xs, activation)
    assert backend.namespace(logits_b) is target()[0]
    close(logits_b, logits, dtype)
    loss, grads = rnn.loss_and_grads(params, x, y, activation)
    loss_b, grads_b = rnn.loss_and_grads(other, xs, ys, activation)
    tol = dict(rel=1e-9, abs=1e-12) if dtype == "float64" else dict(rel=1e-4, abs=1e-6)
    assert loss_b == pytest.approx(loss, **tol)
    for name in rnn.PARAM_NAMES:
        assert backend.namespace(grads_b[name]) is target()[0]
        close(grads_b[name], grads[name], dtype)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@given(data=st.data())
def test_the_gated_cells_forward_backward_and_adamw_agree(cell, data):
    """Every cell runs unchanged on the array API (float64, T = 1..4), AdamW included."""
    params, x, y, _ = data.draw(models(cell=cell))
    other = {k: put(v) for k, v in params.items()}
    xs, ys = put(x), put(y)
    logits, _ = rnn.forward(params, x, cell=cell)
    logits_b, _ = rnn.forward(other, xs, cell=cell)
    assert backend.namespace(logits_b) is target()[0]
    close(logits_b, logits, "float64")
    loss, grads = rnn.loss_and_grads(params, x, y, cell=cell)
    loss_b, grads_b = rnn.loss_and_grads(other, xs, ys, cell=cell)
    assert loss_b == pytest.approx(loss, rel=1e-9, abs=1e-12)
    for name in rnn.param_names(cell):
        assert backend.namespace(grads_b[name]) is target()[0]
        close(grads_b[name], grads[name], "float64")
    opt, opt_b = optim.AdamW(params, lr=0.01), optim.AdamW(other, lr=0.01)
    opt.step(params, grads)
    opt_b.step(other, grads_b)
    for name in rnn.param_names(cell):
        close(other[name], params[name], "float64")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_gated_model_starts_alike_on_every_backend(cell):
    xp, like = target()
    params = rnn.init_params(7, 4, 5, seed=3, dtype="float64", cell=cell)
    other = rnn.init_params(7, 4, 5, seed=3, dtype="float64", xp=xp, like=like, cell=cell)
    for name in rnn.param_names(cell):
        np.testing.assert_array_equal(backend.to_numpy(other[name]), params[name])


@given(st.integers(0, 2**32 - 1))
def test_init_and_adamw_agree(seed):
    xp, like = target()
    params = rnn.init_params(7, 4, 5, seed=seed % 1000, dtype="float64")
    other = rnn.init_params(7, 4, 5, seed=seed % 1000, dtype="float64", xp=xp, like=like)
    for name in rnn.PARAM_NAMES:
        np.testing.assert_array_equal(backend.to_numpy(other[name]), params[name])
    opt, opt_b = optim.AdamW(params, lr=0.01), optim.AdamW(other, lr=0.01)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        opt.step(params, grads)
        opt_b.step(other, {k: put(v) for k, v in grads.items()})
    for name in rnn.PARAM_NAMES:
        close(other[name], params[name], "float64")
    state = {k: backend.to_numpy(v) for k, v in opt_b.state_dict().items()}
    restored = optim.AdamW(other)
    restored.load_state_dict(state)
    close(restored.v["W_hh"], opt.v["W_hh"], "float64")


@given(st.integers(2, 12), st.integers(0, 2**32 - 1))
def test_fourier_and_ablation_maths_agree(p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((p, 3))
    M = rng.standard_normal((p, p, 2))
    close(fourier.project(put(x)), fourier.project(x), "float64")
    close(fourier.spectrum(put(x)), fourier.spectrum(x), "float64")
    close(fourier.spectrum_2d(put(M)), fourier.spectrum_2d(M), "float64")
    close(fourier.frequency_shares(fourier.spectrum(put(x))), fourier.frequency_shares(fourier.spectrum(x)), "float64")
    params = rnn.init_params(p, 3, 4, seed=1, dtype="float64")
    removed = ablate.remove(params, [1])
    removed_b = ablate.remove({k: put(v) for k, v in params.items()}, [1])
    for name in rnn.PARAM_NAMES:
        close(removed_b[name], removed[name], "float64")


def _cupy_works():
    try:
        backend.get("cupy")
        return True
    except Exception:
        return False


@pytest.mark.skipif(_cupy_works(), reason="CuPy and a GPU are available here")
def test_asking_for_cupy_without_it_is_a_clear_one_line_error(tmp_path):
    from click.testing import CliRunner
    from tinymod.cli import main
    from tinymod.errors import TinymodError
    with pytest.raises(TinymodError, match="--backend cupy needs CuPy"):
        backend.get("cupy")
    for args in (["train", "--preset", "quick", "--backend", "cupy", "--out", str(tmp_path / "r")],
                 ["fourier", str(tmp_path), "--backend", "cupy"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1 and "--backend cupy needs CuPy" in result.output
        assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_arrays_of_two_namespaces_are_refused():
    import array_api_strict as strict
    from tinymod.model import backend
    assert backend.namespace(np.ones(2), np.float64(3.0), 2.0) is np
    with pytest.raises(TypeError, match="different namespaces mixed"):
        backend.namespace(np.ones(2), strict.asarray([1.0, 2.0]))
