"""Functional key frequencies, the logit-level measures (restricted and excluded loss), fit
measures that name themselves, parameter snapshots and `tinymod progress`."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from conftest import digest
from tinymod.analysis import construct, fits, keysets, progress, tabulate
from tinymod.reports import pipeline
from tinymod.training import checkpoint, runs, train
from tinymod.cli import main


@given(st.integers(2, 16), st.data())
def test_sum_projection_is_the_least_squares_fit_on_cos_sin_of_a_plus_b(p, data_):
    freqs = data_.draw(st.sets(st.integers(1, p // 2), max_size=3)) if p >= 2 else set()
    L = np.random.default_rng(data_.draw(st.integers(0, 2**32 - 1))).standard_normal((p, p, p))
    s = np.add.outer(np.arange(p), np.arange(p)) % p
    columns = [np.zeros(p * p)]
    for k in sorted(freqs):
        w = 2 * np.pi * k / p
        columns += [np.cos(w * s).ravel(), np.sin(w * s).ravel()]    # sin is 0 at Nyquist
    X = np.stack(columns, axis=1)
    coef, *_ = np.linalg.lstsq(X, L.reshape(p * p, p), rcond=None)
    direct = (X @ coef).reshape(p, p, p)
    np.testing.assert_allclose(keysets.sum_projection(L, freqs)[s], direct, atol=1e-10)
    restricted, excluded = keysets.restricted_and_excluded(L, freqs)
    np.testing.assert_allclose(restricted + excluded, L + L.mean(axis=(0, 1)), atol=1e-10)


@given(st.integers(2, 30), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_fvu_is_the_relative_error_squared_on_centred_data(n, m, seed):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, m))
    fit = y + 0.3 * rng.standard_normal((n, m))
    centred, centred_fit = y - y.mean(), fit - y.mean()
    assert fits.fvu(y, fit) == pytest.approx(fits.relative_error(centred, centred_fit) ** 2)
    assert fits.fvu(y, y) == 0.0


def test_hidden_fit_of_a_pure_product_table_is_exact_and_counts_units():
    p, k = 11, 3
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    w = 2 * np.pi * k / p
    hidden = np.stack([np.cos(w * (a + b)), 2 + np.sin(w * (a - b)), np.cos(2 * w * a),
                       np.zeros((p, p))], axis=-1)       # two on key terms, one off, one dead
    fit = fits.fit_hidden(hidden, [k])
    assert fit["units_alive"] == 3 and fit["units_well_explained"] == 2
    assert fit["unit_r2"][0] == pytest.approx(1.0) and fit["unit_r2"][2] == pytest.approx(0.0, abs=1e-12)
    assert fit["fvu"] == pytest.approx(1 / 3)   # each live unit carries the same variance


def test_logit_fvu_names_itself():
    p = 11
    a, b, c = np.ix_(np.arange(p), np.arange(p), np.arange(p))
    logits = np.cos(2 * np.pi * 3 * (a + b - c) / p) + 0.5 * np.cos(2 * np.pi * (a - c) / p)
    error, _, _ = fits.fit_logits(logits, [3])
    report_ = tabulate.fourier_picture(construct.build(p, [3], 16, 8)[0])
    assert report_["fit"]["logits_fvu"] == pytest.approx(report_["fit"]["logits_relative_error"] ** 2)
    assert 0 < error < 1 and "fraction of variance unexplained" in report_["fit"]["measures"]


def test_snapshot_schedule():
    steps = train.snapshot_steps(5000)
    assert steps[0] == 0 and steps[-1] == 5000 and steps == sorted(set(steps))
    assert len(steps) >= 50 and sum(s <= 100 for s in steps) >= 10      # early phases resolved
    assert train.snapshot_steps(5000, 0) == []
    assert train.snapshot_steps(10, 4) == [0, 4, 8, 10]


def test_phases_follow_their_rules():
    def row(step, train_acc, test_acc, test_loss):
        return {"step": step, "train_acc": train_acc, "test_acc": test_acc, "test_loss": test_loss}
    rows = [row(0, 0.0, 0.0, 4.0), row(10, 1.0, 0.0, 9.0), row(20, 1.0, 0.3, 5.0),
            row(30, 1.0, 0.7, 0.5), row(40, 1.0, 1.0, 0.005), row(50, 1.0, 1.0, 0.001)]
    assert progress.phases(rows) == [
        {"name": "memorisation", "start": 0, "end": 10, "open": False},
        {"name": "circuit formation", "start": 10, "end": 30, "open": False},
        {"name": "cleanup", "start": 30, "end": 40, "open": False}]
    assert progress.phases(rows[:3]) == [
        {"name": "memorisation", "start": 0, "end": 10, "open": False},
        {"name": "circuit formation", "start": 10, "end": 20, "open": True}]


def test_progress_on_a_tiny_run(tiny_run):
    run = tiny_run(300)
    snaps = runs.list_snapshots(run)
    assert [s for s, _ in snaps] == train.snapshot_steps(300)
    _, _, opt = checkpoint.load(snaps[-1][1])
    assert opt is None                                               # parameters only
    result = CliRunner().invoke(main, ["progress", str(run)])
    assert result.exit_code == 0, result.output
    r = json.loads((run / "progress.json").read_text())
    fourier_report = pipeline.fourier_report(checkpoint.load(run / "model.npz")[0],
                                           json.loads((run / "config.json").read_text()))
    assert r["key_frequencies"] == fourier_report["in_use_key_frequencies"]
    assert "in_use_key_frequencies" in r["key_set"]
    assert [row["step"] for row in r["rows"]] == [s for s, _ in snaps]
    for key in ("train_loss", "test_acc", "weight_norm", "restricted_loss", "restricted_test_loss",
                "excluded_loss", "key_energy", "frequencies_for_90", "top_2k_singular_energy"):
        assert key in r["rows"][-1]
    names = [ph["name"] for ph in r["phases"]]
    assert names == list(progress.NAMES)[:len(names)] and names[0] == "memorisation"
    assert all(a["end"] == b["start"] for a, b in zip(r["phases"], r["phases"][1:]))
    assert set(r["phase_rules"]) == set(progress.NAMES)
    assert (run / "progress.png").read_bytes()[:4] == b"\x89PNG"
    # the last row measures the final model
    last = r["rows"][-1]
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert last["test_acc"] == pytest.approx(metrics[-1]["test_acc"])
    assert last["train_loss"] == pytest.approx(metrics[-1]["train_loss"], rel=1e-4)   # float32 run


def test_report_has_every_new_section(tiny_run):
    run = tiny_run(300)
    result = CliRunner().invoke(main, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "ours:" in result.output and "criterion:" in result.output
    text = (run / "report.md").read_text()
    for heading in ("## Through training", "## Beside an untrained control", "## Which frequencies the model uses",
                    "| spectral threshold |", "| in-use factor |", "| functional level |", "The key curve",
                    "FVU (pooled)", "![progress](progress.png)", "![the key curve](key_curve.png)",
                    "| claim | paper | ours | verdict | criterion | why |", "**one sample**: seed 0, BLAS kernels"):
        assert heading in text, heading
    f = json.loads((run / "fourier.json").read_text())
    for field in ("key_frequencies", "functional_key_frequencies", "in_use_key_frequencies"):
        assert f[field] == sorted(f[field])
    assert {"restricted_loss", "restricted_test_loss", "excluded_loss", "rule"} <= set(f["key_sets"]["in_use"])
    assert (run / "control.json").is_file() and (run / "progress.json").is_file()


def test_a_perfect_hand_built_model_passes_the_one_sided_claims(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["construct", "--p", "13", "--freqs", "2,5", "--out", str(tmp_path),
                                "--phases", "16", "--offsets", "8", "--scale", "30"]).exit_code == 0
    result = runner.invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    verdicts = {c.split(":")[0]: c for c in result.output.splitlines() if not c.startswith(" ")}
    assert verdicts["a few frequencies carry the computation (sparse Fourier structure)"].endswith("reproduced")
    assert verdicts["significant singular components (2 per key frequency) hold most energy"].endswith("reproduced")
    assert "## Through training" not in (tmp_path / "report.md").read_text()   # no snapshots


def test_progress_bad_inputs_change_no_file(tmp_path, tiny_run):
    runner = CliRunner()
    (tmp_path / "notes.txt").write_text("not a run")
    before = digest(tmp_path)
    result = runner.invoke(main, ["progress", str(tmp_path)])
    assert result.exit_code == 1 and "is not a finished tinymod run" in result.output
    assert "Traceback" not in result.output and digest(tmp_path) == before
    run = tmp_path / "run"
    result = runner.invoke(main, ["train", "--preset", "quick", "--p", "7", "--d-embed", "4", "--d-hidden", "8",
                                  "--steps", "20", "--snapshot-every", "0", "--out", str(run)])
    assert result.exit_code == 0, result.output
    before = digest(tmp_path)
    result = runner.invoke(main, ["progress", str(run)])
    assert result.exit_code == 1 and "no parameter snapshots" in result.output
    assert "--snapshot-every 0" in result.output and len(result.output.strip().splitlines()) == 1
    assert digest(tmp_path) == before
    result = runner.invoke(main, ["train", "--snapshot-every", "-1", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "snapshot-every must be 0" in result.output


def test_overwrite_removes_the_old_snapshots(tiny_run):
    run = tiny_run(40)
    assert runs.list_snapshots(run)
    result = CliRunner().invoke(main, ["train", "--preset", "quick", "--p", "11", "--d-embed", "8", "--d-hidden",
                                       "16", "--steps", "10", "--snapshot-every", "0", "--overwrite", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert runs.list_snapshots(run) == []
