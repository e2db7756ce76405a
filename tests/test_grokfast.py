"""Grokfast (Lee et al. 2024): the EMA gradient filter against a scalar transcription of the
reference `gradfilter_ema`, in place without allocation, its state in the checkpoint so a
resumed run is bit-identical, and its settings on the command line."""
import json
import tracemalloc

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from conftest import invoke
from tinymod.model import optim, rnn
from tinymod.training import checkpoint


def reference(gradients, alpha, lamb, dtype):
    """gradfilter_ema, one number at a time: grads = g at the first call; then every call
    grads = grads * alpha + g * (1 - alpha), and g + grads * lamb goes to the optimiser. As
    in torch, each Python-float constant (1 - alpha included) meets the tensor in its dtype."""
    a, b, c = dtype(alpha), dtype(1 - alpha), dtype(lamb)
    mu, out = None, []
    for g in gradients:
        mu = g if mu is None else mu
        mu = mu * a + g * b
        out.append(g + mu * c)
    return out


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=8), st.floats(0, 0.999), st.floats(0, 10),
       st.sampled_from([np.float32, np.float64]))
def test_the_filter_is_the_reference_bit_for_bit(values, alpha, lamb, dtype):
    params = {"w": np.zeros(1, dtype)}
    grad_filter = optim.GrokfastEMA(params, alpha, lamb)
    expected = reference([dtype(v) for v in values], alpha, lamb, dtype)
    for v, want in zip(values, expected):
        grads = {"w": np.array([v], dtype)}
        grad_filter.apply(grads)
        assert grads["w"][0] == want and grads["w"].dtype == dtype


def test_the_filter_allocates_nothing_per_step():
    params = rnn.init_params(31, 32, 32, 0, "float32")
    grad_filter = optim.GrokfastEMA(params, 0.98, 2.0)
    grads = {k: np.ones_like(v) for k, v in params.items()}
    grad_filter.apply(grads)                                   # warm
    tracemalloc.start()
    grad_filter.apply(grads)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4096, peak                                   # the (p, H) arrays are 4 KiB and up


def test_a_filtered_run_resumes_bit_identically_and_records_its_settings(tmp_path):
    flags = ["--grokfast-lambda", 2, "--grokfast-alpha", 0.9]
    assert invoke("--steps", 40, "--out", tmp_path / "straight", *flags).exit_code == 0
    assert invoke("--steps", 20, "--out", tmp_path / "split", *flags).exit_code == 0
    result = invoke("--steps", 40, "--out", tmp_path / "split", "--resume", *flags)
    assert result.exit_code == 0, result.output
    a = checkpoint.load(tmp_path / "straight" / "model.npz")[0]
    b = checkpoint.load(tmp_path / "split" / "model.npz")[0]
    assert all(np.array_equal(a[k], b[k]) for k in rnn.PARAM_NAMES)
    config = json.loads((tmp_path / "split" / "config.json").read_text())
    assert config["grokfast_lambda"] == 2 and config["grokfast_alpha"] == 0.9
    _, _, opt = checkpoint.load(tmp_path / "split" / "checkpoints" / "step_0000020.npz")
    assert set(f"gf_{name}" for name in rnn.PARAM_NAMES) <= set(opt)
    plain = checkpoint.load(tmp_path / "straight" / "model.npz")[0]
    assert invoke("--steps", 40, "--out", tmp_path / "plain").exit_code == 0
    assert not np.array_equal(checkpoint.load(tmp_path / "plain" / "model.npz")[0]["E"], plain["E"])


def test_resume_refuses_another_filter_and_bad_values_are_one_line(tmp_path):
    assert invoke("--steps", 20, "--out", tmp_path / "r", "--grokfast-lambda", 2).exit_code == 0
    result = invoke("--steps", 30, "--out", tmp_path / "r", "--resume", "--grokfast-lambda", 5)
    assert result.exit_code == 1 and "grokfast_lambda differs" in result.output, result.output
    for flag, value, message in (("--grokfast-lambda", -1, "grokfast-lambda must be non-negative"),
                                 ("--grokfast-alpha", 1, "grokfast-alpha must lie in [0, 1)")):
        result = invoke("--steps", 5, "--out", tmp_path / "bad", flag, value)
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
