"""Sums of three or more tokens: the T-aware evaluator, Fourier analysis and ablation
against a plain loop over all tuples, the running-sum analysis on a hidden state whose
answer is known, and the commands on a three-token run."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tinymod.analysis import ablate, fits, keysets, partial_sums, tabulate
from tinymod.model import data, reference, rnn
from tinymod.cli import main
from tinymod.model.kernels import softmax_xent_rows_portable


def plain(params, T, activation="relu"):
    """Logits over all p**T tuples by the contract's literal loop, and the mean loss."""
    p = params["E"].shape[0]
    x = data.all_tuples(p, T)
    logits, _ = reference.forward_plain(params, x, activation)
    total, _ = softmax_xent_rows_portable(logits, x.sum(axis=1) % p, 1.0)
    return logits, total / len(x), float(np.mean(np.argmax(logits, axis=1) == x.sum(axis=1) % p))


@pytest.mark.parametrize("T", [3, 4])
@given(seed=st.integers(0, 2**32 - 1), p=st.integers(2, 5))
def test_evaluator_and_tables_agree_with_the_plain_loop(T, seed, p):
    params = rnn.init_params(p, 3, 4, seed=seed, dtype="float64")
    logits, loss, acc = plain(params, T)
    tables = tabulate.model_tables(params, "relu", T)
    np.testing.assert_allclose(tables["logits"].reshape(-1, p), logits, atol=1e-12)
    measured = ablate.Evaluator(p, seq_len=T)(params)
    assert measured["loss"] == pytest.approx(loss, rel=1e-12) and measured["accuracy"] == acc
    removed = ablate.remove(params, [1], "both")
    assert ablate.Evaluator(p, seq_len=T)(removed)["loss"] == pytest.approx(plain(removed, T)[1], rel=1e-12)


@pytest.mark.parametrize("T", [2, 3])
@given(p=st.integers(2, 9), data_=st.data())
def test_sum_projection_over_tuples_is_the_least_squares_fit(T, p, data_):
    freqs = sorted(data_.draw(st.sets(st.integers(1, p // 2), max_size=2)))
    L = np.random.default_rng(data_.draw(st.integers(0, 2**32 - 1))).standard_normal((p,) * T + (p,))
    s = data.grid_sums(T, p)
    columns = [np.zeros(p ** T)]
    for k in freqs:
        columns += [np.cos(2 * np.pi * k * s / p), np.sin(2 * np.pi * k * s / p)]
    X = np.stack(columns, axis=1)
    coef, *_ = np.linalg.lstsq(X, L.reshape(-1, p), rcond=None)
    np.testing.assert_allclose(keysets.sum_projection(L, freqs)[s], X @ coef, atol=1e-10)


def test_logit_fit_of_a_three_token_fourier_table_is_exact():
    p, k = 7, 2
    s = data.grid_sums(3, p).reshape(p, p, p)[..., None]
    c = np.arange(p)
    logits = 3 * np.cos(2 * np.pi * k * (s - c) / p) + 0.2 * c
    error, accuracy, _ = fits.fit_logits(logits, [k])
    assert error < 1e-12 and accuracy == 1.0
    assert fits.fit_logits(logits, [k + 1])[0] > 0.9


def test_running_sum_analysis_on_a_hidden_clock():
    """h_t = (cos, sin)(w s_t) exactly, and W_hh a rotation in that plane: the running sum
    explains all of it at every step, the separate tokens do not, and W_hh scores as a
    rotation."""
    p, k, T = 11, 3, 3
    tokens = data.all_tuples(p, T)
    w = 2 * np.pi * k / p
    hs = []
    for t in range(1, T + 1):
        s = tokens[:, :t].sum(axis=1)
        hs.append(np.stack([np.cos(w * s), np.sin(w * s), np.zeros(len(s))], axis=1))
    angle = 0.7
    W_hh = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1.0]])
    result = partial_sums.measure_running_sum({"tokens": tokens, "hs": hs, "W_hh": W_hh, "cell": "rnn",
                                   "preactivations": [h @ W_hh.T for h in hs]}, [k], p)
    for step in result["steps"]:
        assert step["fraction_explained"] == pytest.approx(1.0, abs=1e-10)
        if step["t"] >= 2:
            assert step["fraction_explained_by_tokens"] < 0.9
    rot = result["rotation"][0]
    assert rot["rotation_score"] == pytest.approx(1.0) and rot["in_plane"] == pytest.approx(1.0)
    assert abs(rot["angle_degrees"]) == pytest.approx(np.degrees(angle))
    assert len(result["clock"]["points"]) == T and len(result["clock"]["points"][0]) == p
    # the message h_t W_hh^T is the clock turned by a fixed angle: all running sum, and the
    # same map s -> message at every step (cosine 1)
    for row in result["carried"]:
        assert row["by_sum"] == pytest.approx(1.0, abs=1e-10) and row["by_sum_per_frequency"][str(k)] == row["by_sum"]
        if row["t"] >= 2:
            assert row["by_tokens"] < 0.9
    assert [m["cosine"] for m in result["same_map"]] == pytest.approx([1.0])


def test_carried_sum_tells_a_carried_clock_from_carried_tokens():
    """Two hand-made recurrences over the same tuples: one passes on cos/sin(w s_t), the
    other the tokens' own waves; the carried measure tells them apart where h_t alone
    (which holds both) cannot."""
    p, k, T = 11, 2, 3
    tokens = data.all_tuples(p, T)
    w = 2 * np.pi * k / p
    waves = lambda v: [np.cos(w * v), np.sin(w * v)]
    hs = []
    for t in range(1, T + 1):
        s = tokens[:, :t].sum(axis=1)
        own = [f for j in range(t) for f in waves(tokens[:, j])]
        hs.append(np.stack(waves(s) + own + [np.zeros(len(s))] * (2 * T - 2 * t), axis=1))   # (N, 2 + 2T)
    keep_sum = np.diag([1.0, 1.0] + [0.0] * 2 * T)       # W_hh passes on the sum's plane only
    keep_tokens = np.diag([0.0, 0.0] + [1.0] * 2 * T)    # ... or the tokens' planes only
    for W_hh, by_sum in ((keep_sum, True), (keep_tokens, False)):
        tables = {"tokens": tokens, "hs": hs, "W_hh": W_hh, "cell": "rnn", "preactivations": [h @ W_hh.T for h in hs]}
        row = partial_sums.measure_running_sum(tables, [k], p)["carried"][1]          # t = 2
        assert (row["by_sum"] > 0.99 and row["by_tokens"] < 0.01) if by_sum else \
               (row["by_tokens"] > 0.99 and row["by_sum"] < 0.5)


def test_a_gated_cell_gets_the_carried_measure_per_gate():
    params = rnn.init_params(5, 4, 6, seed=1, dtype="float64", cell="gru")
    tables = tabulate.model_tables(params, None, 3)
    result = partial_sums.measure_running_sum(tables, [1, 2], 5)
    assert [(r["t"], r["object"].split(":")[0]) for r in result["carried"]] == [
        (t, g) for t in (1, 2) for g in ("r", "z", "n")]
    assert result["rotation"] is None and "not measured" in result["rotation_rule"]
    assert all(0 <= r["by_sum"] <= 1 + 1e-12 for r in result["carried"])


def test_three_token_run_end_to_end(tmp_path):
    run = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--preset", "sum3", "--p", "7", "--d-embed", "8", "--d-hidden", "16",
                                  "--steps", "60", "--out", str(run)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "fourier.json").read_text())
    assert report["seq_len"] == 3 and [s["t"] for s in report["partial_sums"]["steps"]] == [1, 2, 3]
    assert report["neurons"] is None and report["hidden_spectrum_2d"] is None
    assert "The running sum through the sequence" in (run / "report.md").read_text()
    ablation = json.loads((run / "ablation.json").read_text())
    # the ablation's baseline (batched, the run's dtype) and the Fourier tables (float64) agree
    assert ablation["baseline"]["accuracy"] == pytest.approx(report["accuracy_all_pairs"], abs=1.5 / 7 ** 3)
    progress = json.loads((run / "progress.json").read_text())
    assert progress["rows"] and progress["phases"][0]["name"] == "memorisation"


def test_too_many_tuples_is_refused(tmp_path):
    from tinymod.training import checkpoint
    params = rnn.init_params(113, 4, 4)
    checkpoint.save(tmp_path / "model.npz", params, {"p": 113, "d_embed": 4, "d_hidden": 4, "activation": "relu",
                                                     "seq_len": 4, "frac": 0.5, "seed": 0, "step": 0})
    result = CliRunner().invoke(main, ["fourier", str(tmp_path)])
    assert result.exit_code == 1 and "113**4 tuples, more than" in result.output, result.output
