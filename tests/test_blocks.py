"""The same result for any thread count: fixed example blocks, single-threaded BLAS, block
sums in order; and the fused readout + loss tail bit-identical to the unfused path."""
import json
import os
from contextlib import contextmanager
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given

from strategies import models
from tinymod.model import blocks, rnn
from tinymod.training import checkpoint
from tinymod.model.kernels import softmax_xent


@contextmanager
def tiny_blocks(rows=2):
    """Several blocks even for hypothesis's small batches."""
    saved, blocks.ROWS = blocks.ROWS, rows
    try:
        yield
    finally:
        blocks.ROWS = saved


@given(models())
def test_fused_tail_is_bit_identical_to_forward_softmax_backward(model):
    params, x, y, activation = model
    with tiny_blocks():
        loss, grads = rnn.loss_and_grads(params, x, y, activation)
        logits, cache = rnn.forward(params, x, activation)
        plain_loss, dlogits = softmax_xent(logits, y)
        plain = rnn.backward(params, cache, dlogits)
    for name in rnn.PARAM_NAMES:
        assert np.array_equal(grads[name], plain[name]), name
    assert loss == pytest.approx(plain_loss, rel=1e-12)


@given(models())
def test_thread_count_does_not_change_a_bit(model):
    params, x, y, activation = model
    results = []
    for n in (1, 2, 3):
        with tiny_blocks(), blocks.threads_set(n):
            results.append(rnn.loss_and_grads(params, x, y, activation))
    for loss, grads in results[1:]:
        assert loss == results[0][0]
        assert all(np.array_equal(grads[k], results[0][1][k]) for k in rnn.PARAM_NAMES)


def test_blocks_are_fixed_by_rows_alone():
    assert blocks.ranges(2500) == [(0, 1024), (1024, 2048), (2048, 2500)]
    a = np.random.default_rng(0).standard_normal((2500, 7))
    b = np.random.default_rng(1).standard_normal((2500, 5))
    with blocks.threads_set(1):
        one = blocks.matmul_sum(a, b)
    with blocks.threads_set(2):
        two = blocks.matmul_sum(a, b)
    assert np.array_equal(one, two)
    np.testing.assert_allclose(one, a.T @ b, rtol=1e-12)


def test_training_and_its_analysis_are_bit_identical_for_any_thread_count(tmp_path):
    """Many steps on 2 blocks of examples: --threads 1 and 2, and BLAS started with 1 or
    2 threads, in separate processes, end with the same bits. A lecture-sized analysis of the
    model (`tinymod fourier`: key sets, curve, fits) gives the same sets, counts and orders,
    and floats equal to 1e-9 (LAPACK's least squares may change a last bit with the thread
    count): what the lectures print, rounded, is the same, so they run with one count only."""
    common = ["train", "--preset", "quick", "--p", "47", "--frac", "0.6", "--d-embed", "16",
              "--d-hidden", "16", "--steps", "300", "--snapshot-every", "0"]
    runs = []
    for threads, blas in (("1", "1"), ("2", "2"), ("2", "1")):
        out = tmp_path / f"t{threads}-b{blas}"
        env = {**os.environ, "OPENBLAS_NUM_THREADS": blas}
        subprocess.run([sys.executable, "-m", "tinymod", *common, "--threads", threads, "--out", str(out)],
                       check=True, capture_output=True, env=env)
        subprocess.run([sys.executable, "-m", "tinymod", "fourier", str(out)], check=True, capture_output=True, env=env)
        runs.append((checkpoint.load(out / "model.npz")[0], (out / "fourier.json").read_text()))
        config = json.loads((out / "config.json").read_text())
        assert config["threads_used"] == int(threads) and config["blas"][0]["internal_api"]
    for params, analysis in runs[1:]:
        assert all(np.array_equal(runs[0][0][k], params[k]) for k in rnn.PARAM_NAMES)
        assert_same_analysis(json.loads(analysis), json.loads(runs[0][1]))


def assert_same_analysis(a, b, where="fourier.json"):
    """Equal structure and non-float values; floats equal to a relative 1e-9."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_analysis(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_analysis(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-300), where
    else:
        assert a == b, where
