"""The gated cells (GRU, LSTM): BPTT against fourth-order finite differences (float64), the
fast path against the gate-by-gate plain loop, NaN and inf, PyTorch's initialisation, the
thread count, and `tinymod train --cell` with every analysis on its run."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from strategies import models
from test_gradients import REL_BOUND, numeric_grad, relative_error
from tinymod.cli import main
from tinymod.errors import TinymodError
from tinymod.model import blocks, gated, kernels, reference, rnn
from tinymod.training import checkpoint
from tinymod.training.config import build

CELLS = ("gru", "lstm")


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
def test_bptt_matches_finite_differences(cell, data):
    params, x, y, _ = data.draw(models(cell=cell))
    _, grads = rnn.loss_and_grads(params, x, y, cell=cell)
    assert set(grads) == set(rnn.GATED_NAMES)
    for name in rnn.GATED_NAMES:
        err = relative_error(numeric_grad(params, x, y, None, name), grads[name])
        assert err < REL_BOUND, f"{cell} {name}: relative error {err:.2e}"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-11), ("float32", 1e-4)])
@given(data=st.data())
def test_fast_path_is_the_gate_by_gate_plain_loop(cell, dtype, tol, data):
    params, x, _, _ = data.draw(models(dtype=dtype, cell=cell))
    logits, cache = rnn.forward(params, x, cell=cell)
    plain_logits, plain_cache = reference.forward_gated_plain(params, x, cell)
    assert logits.dtype == np.dtype(dtype)
    np.testing.assert_allclose(logits, plain_logits, rtol=tol, atol=tol)
    dlogits = np.random.default_rng(0).standard_normal(logits.shape).astype(dtype)
    grads = rnn.backward(params, cache, dlogits)
    plain = reference.backward_gated_plain(params, plain_cache, dlogits)
    for name in rnn.GATED_NAMES:
        assert grads[name].dtype == np.dtype(dtype), name
        np.testing.assert_allclose(grads[name], plain[name], rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
def test_non_finite_parameters_give_what_the_plain_loop_gives(cell, data):
    """A NaN or inf anywhere: the loss is finite exactly when the plain loop's is, and the
    logits are NaN exactly where the plain loop's are (W_hh too, at T = 1: h_0 @ W_hh.T)."""
    params, x, y, _ = data.draw(models(cell=cell))
    name = data.draw(st.sampled_from(rnn.GATED_NAMES))
    params[name].flat[data.draw(st.integers(0, params[name].size - 1))] = data.draw(
        st.sampled_from((np.nan, np.inf, -np.inf)))
    with np.errstate(all="ignore"):
        loss, _ = rnn.loss_and_grads(params, x, y, cell=cell)
        logits, _ = rnn.forward(params, x, cell=cell)
        plain_logits, _ = reference.forward_gated_plain(params, x, cell)
        plain, _ = kernels.softmax_xent_rows_portable(plain_logits, y, 1.0)
    assert np.isfinite(loss) == np.isfinite(plain), (loss, plain)
    np.testing.assert_array_equal(np.isnan(logits), np.isnan(plain_logits))


@pytest.mark.parametrize("cell", CELLS)
@given(data=st.data())
def test_thread_count_does_not_change_a_bit(cell, data):
    params, x, y, _ = data.draw(models(cell=cell))
    saved, blocks.ROWS = blocks.ROWS, 2                 # several blocks even for tiny batches
    try:
        results = []
        for n in (1, 2, 3):
            with blocks.threads_set(n):
                results.append(rnn.loss_and_grads(params, x, y, cell=cell))
    finally:
        blocks.ROWS = saved
    for loss, grads in results[1:]:
        assert loss == results[0][0]
        assert all(np.array_equal(grads[k], results[0][1][k]) for k in rnn.GATED_NAMES)


@pytest.mark.parametrize("cell, gates", [("gru", 3), ("lstm", 4)])
def test_pytorch_shapes_gate_order_and_initialisation(cell, gates):
    params = rnn.init_params(113, 128, 96, seed=3, dtype="float64", cell=cell)
    assert tuple(params) == rnn.GATED_NAMES
    assert params["W_ih"].shape == (gates * 96, 128) and params["W_hh"].shape == (gates * 96, 96)
    assert params["b_ih"].shape == params["b_hh"].shape == (gates * 96,)
    bound = 1 / np.sqrt(96)
    for name in rnn.GATED_NAMES[1:]:         # U(-1/sqrt(H), 1/sqrt(H)), biases too (nn.GRU, nn.LSTM)
        assert np.abs(params[name]).max() <= bound and np.abs(params[name]).max() > 0.95 * bound, name
    assert abs(params["E"].std() - 1) < 0.02  # nn.Embedding: N(0, 1)
    assert rnn.cell_of(params) == cell


def test_a_gru_step_by_hand():
    """One step of torch.nn.GRU's documented equations, by hand, at D = H = 1 (gates r, z, n)."""
    params = {"E": np.array([[0.5], [-1.0]]), "W_ih": np.array([[0.3], [-0.2], [0.7]]),
              "W_hh": np.array([[0.1], [0.4], [-0.6]]), "b_ih": np.array([0.05, -0.1, 0.2]),
              "b_hh": np.array([-0.3, 0.25, 0.15]), "W_out": np.array([[1.0], [-1.0]]),
              "b_out": np.zeros(2)}
    sig = lambda v: 1 / (1 + np.exp(-v))
    h = 0.0
    for a in (1, 0):                                # x = (1, 0)
        e = params["E"][a, 0]
        r = sig(0.3 * e + 0.05 + 0.1 * h - 0.3)
        z = sig(-0.2 * e - 0.1 + 0.4 * h + 0.25)
        n = np.tanh(0.7 * e + 0.2 + r * (-0.6 * h + 0.15))
        h = (1 - z) * n + z * h
    logits, _ = rnn.forward(params, np.array([[1, 0]]), cell="gru")
    np.testing.assert_allclose(logits[0], [h, -h], rtol=1e-15)


def test_an_lstm_step_by_hand():
    """Two steps of torch.nn.LSTM's documented equations at D = H = 1 (gates i, f, g, o)."""
    W_ih, W_hh = np.array([0.3, -0.2, 0.7, 0.1]), np.array([0.1, 0.4, -0.6, 0.2])
    b_ih, b_hh = np.array([0.05, -0.1, 0.2, 0.0]), np.array([-0.3, 0.25, 0.15, 0.1])
    params = {"E": np.array([[0.5], [-1.0]]), "W_ih": W_ih[:, None], "W_hh": W_hh[:, None],
              "b_ih": b_ih, "b_hh": b_hh, "W_out": np.array([[2.0]]), "b_out": np.zeros(1)}
    sig = lambda v: 1 / (1 + np.exp(-v))
    h = c = 0.0
    for a in (0, 1):
        pre = W_ih * params["E"][a, 0] + b_ih + W_hh * h + b_hh
        i, f, g, o = sig(pre[0]), sig(pre[1]), np.tanh(pre[2]), sig(pre[3])
        c = f * c + i * g
        h = o * np.tanh(c)
    params["E"] = params["E"]
    logits, _ = rnn.forward({**params, "W_out": np.array([[2.0], [0.0]]), "b_out": np.zeros(2)},
                            np.array([[0, 1]]), cell="lstm")
    np.testing.assert_allclose(logits[0], [2 * h, 0.0], rtol=1e-15)


def test_cell_and_parameters_must_agree():
    params = rnn.init_params(5, 3, 4, cell="lstm")
    with pytest.raises(ValueError, match="not those of the gru cell"):
        rnn.forward(params, np.array([[1, 2]]), cell="gru")
    with pytest.raises(ValueError, match="cell must be one of"):
        rnn.init_params(5, 3, 4, cell="transformer")
    from tinymod.model.gated import gate_count
    assert [gate_count(c) for c in ("rnn", "gru", "lstm")] == [1, 3, 4]
    with pytest.raises(ValueError, match="cell must be one of"):
        gate_count("gur")


def test_config_refuses_an_activation_for_a_gated_cell_and_records_none():
    assert build("quick", {"cell": "gru"}).validate().activation is None
    assert build("quick", {}).activation == "relu"
    with pytest.raises(TinymodError, match="activation applies to the vanilla cell only"):
        build("quick", {"cell": "lstm", "activation": "relu"}).validate()
    with pytest.raises(TinymodError, match="cell must be one of rnn, gru, lstm"):
        build("quick", {"cell": "mlp"}).validate()


def test_checkpoints_hold_the_cell_and_refuse_another_cells_arrays(tmp_path):
    params = rnn.init_params(5, 3, 4, cell="gru", dtype="float64")
    config = {"p": 5, "d_embed": 3, "d_hidden": 4, "activation": None, "cell": "gru", "seq_len": 2,
              "frac": 0.5, "seed": 0, "step": 1}
    path = checkpoint.save(tmp_path / "g.npz", params, config)
    loaded, read, _ = checkpoint.load(path)
    assert read["cell"] == "gru" and set(loaded) == set(rnn.GATED_NAMES)
    assert all(np.array_equal(loaded[k], params[k]) for k in params)
    for change, message in [({"cell": "rnn", "activation": "relu"}, "has arrays of another cell"),
                            ({"cell": "lstm"}, "W_ih has shape"),
                            ({"activation": "relu"}, "a gru has no activation setting"),
                            ({"cell": "rwkv"}, "unknown cell 'rwkv'")]:
        checkpoint.save(tmp_path / "x.npz", params, {**config, **change})
        with pytest.raises(TinymodError, match=message):
            checkpoint.load(tmp_path / "x.npz")


@pytest.mark.parametrize("cell", CELLS)
def test_train_and_every_analysis_on_a_gated_run(tmp_path, cell):
    run, runner = tmp_path / cell, CliRunner()
    result = runner.invoke(main, ["train", "--preset", "quick", "--cell", cell, "--p", "7", "--d-embed", "8",
                                  "--d-hidden", "8", "--steps", "300", "--out", str(run)])
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["cell"] == cell and config["activation"] is None
    for command in ("fourier", "svd", "ablate", "progress", "report"):
        result = runner.invoke(main, [command, str(run)])
        assert result.exit_code == 0, (command, result.output)
    fits = json.loads((run / "fourier.json").read_text())["fits"]
    gates = ("r", "z", "n") if cell == "gru" else ("i", "f", "g", "o")
    used = fits["in_use"] or fits["functional"]
    assert used is None or set(used) == {*(f"{g}_input" for g in gates), "h2", "logits"}
    svd = json.loads((run / "svd.json").read_text())["matrices"]
    assert {f"W_hh ({g})" for g in gates} | {f"E @ W_ih ({g}).T" for g in gates} <= set(svd)
    assert svd[f"W_ih ({gates[0]})"]["shape"] == [8, 8]
    report = (run / "report.md").read_text()
    assert "the vanilla cell's; a gated cell's W_hh feeds its gates" in report
    result = runner.invoke(main, ["train", "--preset", "quick", "--cell", cell, "--activation", "tanh",
                                  "--out", str(tmp_path / "bad")])
    assert result.exit_code != 0 and "activation applies to the vanilla cell only" in result.output
    assert not (tmp_path / "bad").exists()


@pytest.mark.skipif(not kernels.numba_enabled(), reason="numba is not importable")
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_fused_gate_kernels_give_the_plain_steps_bits_for_any_thread_count(cell, dtype, monkeypatch):
    """Several blocks of examples (6,083 rows), T = 2 and 3: the numba steps equal the plain
    NumPy steps bit for bit, at 1 and 2 threads, so fusing them changed no trained number."""
    from tinymod.model import data
    x = data.make_dataset(23, 3, 0.5, 0).x_train
    params = {k: 2 * v for k, v in rnn.init_params(23, 16, 12, seed=1, dtype=dtype, cell=cell).items()}
    for xs in (x[:, :2], x):
        y = xs.sum(axis=1) % 23
        runs = []
        for threads in (1, 2):
            with blocks.threads_set(threads):
                runs.append(rnn.loss_and_grads(params, xs, y, cell=cell))
        with monkeypatch.context() as plain:
            plain.setattr(gated, "gate_step", gated.gate_step_portable)
            plain.setattr(gated, "gate_step_back", gated.gate_step_back_portable)
            runs.append(rnn.loss_and_grads(params, xs, y, cell=cell))
        for loss, grads in runs[1:]:
            assert loss == runs[0][0]
            for name in grads:
                np.testing.assert_array_equal(grads[name], runs[0][1][name])
