"""BPTT against central finite differences (float64), and the fast path against the plain loop."""
import numpy as np
from hypothesis import assume, given

from strategies import models
from tinymod.model import reference, rnn
from tinymod.model.kernels import softmax_xent

# Fourth-order central differences, f'(x) ~ (f(x-2h) - 8 f(x-h) + 8 f(x+h) - f(x+2h)) / 12h:
# truncation O(h^4) ~ 1e-16 and rounding ~ 1e-16 * loss / h ~ 1e-12 at h = 1e-4.
STEP = 1e-4
REL_BOUND = 1e-7    # ||numeric - analytic|| / max(||numeric|| + ||analytic||, NORM_FLOOR)
NORM_FLOOR = 1e-3   # smaller gradients are compared absolutely: |diff| < 1e-10 (noise ~1e-11)
KINK_MARGIN = 0.01  # reject draws with a ReLU pre-activation this close to 0 (2h moves it < 0.002)


def away_from_kink(params, x, activation, margin=KINK_MARGIN):
    """True unless a ReLU pre-activation lies within `margin` of 0, where a finite
    difference of size STEP could cross the kink."""
    if activation != "relu":
        return True
    B, T = x.shape
    h = np.zeros((B, params["W_hh"].shape[0]))
    for t in range(T):
        pre = params["E"][x[:, t]] @ params["W_ih"].T + h @ params["W_hh"].T + params["b_h"]
        if np.min(np.abs(pre)) < margin:
            return False
        h = np.maximum(pre, 0)
    return True


def numeric_grad(params, x, y, activation, name):
    grad = np.zeros_like(params[name])
    flat, g = params[name].reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        saved = flat[i]
        f = {}
        for k in (-2, -1, 1, 2):
            flat[i] = saved + k * STEP
            f[k] = softmax_xent(rnn.forward(params, x, activation)[0], y)[0]
        flat[i] = saved
        g[i] = (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * STEP)
    return grad


def relative_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), NORM_FLOOR)


@given(models())
def test_bptt_matches_finite_differences(model):
    params, x, y, activation = model
    assume(away_from_kink(params, x, activation))
    _, grads = rnn.loss_and_grads(params, x, y, activation)
    for name in rnn.PARAM_NAMES:
        numeric = numeric_grad(params, x, y, activation, name)
        err = relative_error(numeric, grads[name])
        assert err < REL_BOUND, f"{name}: relative error {err:.2e}"


@given(models())
def test_fast_path_is_the_plain_loop_float64(model):
    params, x, _, activation = model
    logits, cache = rnn.forward(params, x, activation)
    plain_logits, plain_cache = reference.forward_plain(params, x, activation)
    np.testing.assert_allclose(logits, plain_logits, rtol=1e-12, atol=1e-12)
    dlogits = np.random.default_rng(0).standard_normal(logits.shape)
    grads = rnn.backward(params, cache, dlogits)
    plain = reference.backward_plain(params, plain_cache, dlogits)
    for name in rnn.PARAM_NAMES:
        assert grads[name].shape == params[name].shape
        np.testing.assert_allclose(grads[name], plain[name], rtol=1e-11, atol=1e-11, err_msg=name)


@given(models(dtype="float32"))
def test_fast_path_is_the_plain_loop_float32(model):
    params, x, _, activation = model
    logits, cache = rnn.forward(params, x, activation)
    plain_logits, plain_cache = reference.forward_plain(params, x, activation)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, plain_logits, rtol=1e-4, atol=1e-4)
    dlogits = np.random.default_rng(0).standard_normal(logits.shape).astype(np.float32)
    grads = rnn.backward(params, cache, dlogits)
    plain = reference.backward_plain(params, plain_cache, dlogits)
    for name in rnn.PARAM_NAMES:
        assert grads[name].dtype == np.float32, name
        np.testing.assert_allclose(grads[name], plain[name], rtol=1e-4, atol=1e-4, err_msg=name)


def test_paper_shapes_and_fast_path_at_scale():
    """The paper's shapes (p = 113, D = H = 128) on a batch of real pairs, float64."""
    params = rnn.init_params(113, 128, 128, seed=3, dtype="float64")
    x = np.random.default_rng(1).integers(0, 113, (500, 2))
    for name, shape in rnn.param_shapes(113, 128, 128).items():
        assert params[name].shape == shape
    logits, cache = rnn.forward(params, x)
    plain_logits, plain_cache = reference.forward_plain(params, x)
    np.testing.assert_allclose(logits, plain_logits, rtol=1e-12, atol=1e-12)
    dlogits = np.random.default_rng(2).standard_normal(logits.shape)
    grads = rnn.backward(params, cache, dlogits)
    plain = reference.backward_plain(params, plain_cache, dlogits)
    for name in rnn.PARAM_NAMES:
        np.testing.assert_allclose(grads[name], plain[name], rtol=1e-10, atol=1e-10, err_msg=name)
