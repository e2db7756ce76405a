"""`tinymod train` end to end through click's CliRunner (and a real process for signals)."""
import json
import shlex
import signal
import time

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import TINY, digest, invoke, spawn_training, wait_for_checkpoint
from tinymod.model import rnn
from tinymod.training import checkpoint, runs, train
from tinymod.cli import main
from tinymod.reports.speak import ProgressBar

METRIC_KEYS = {"step", "train_loss", "train_acc", "test_loss", "test_acc", "weight_norm", "seconds", "step_ms"}


def model_params(run):
    params, _, _ = checkpoint.load(run / "model.npz")
    return params


def test_tiny_run_writes_the_whole_folder(tmp_path):
    run = tmp_path / "run"
    result = invoke("--steps", 30, "--out", run)
    assert result.exit_code == 0, result.output
    assert f"run: {run}" in result.output and "test accuracy" in result.output
    config = json.loads((run / "config.json").read_text())
    assert config["p"] == 7 and config["seed"] == 0 and config["dtype"] == "float32"
    assert config["backend"] == "numpy" and "version" in config and config["preset"] == "default"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(0, 31, 5))
    assert all(set(r) == METRIC_KEYS for r in rows)
    assert all(0 <= r["train_acc"] <= 1 and r["weight_norm"] > 0 for r in rows)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step_0000010.npz", "step_0000020.npz", "step_0000030.npz"]
    params, meta, opt_state = checkpoint.load(run / "checkpoints" / "step_0000020.npz")
    assert meta["step"] == 20 and int(opt_state["t"]) == 20
    assert model_params(run)["W_hh"].shape == (8, 8)
    for figure in ("curves.png", "weight_norm.png"):
        assert (run / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_threads_option_is_recorded_and_trains(tmp_path):
    result = invoke("--steps", 10, "--threads", 1, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "config.json").read_text())["threads"] == 1


def test_config_file_json_and_toml_with_flags_on_top(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"weight-decay": 0.5, "steps": 10, "seed": 3}))
    (tmp_path / "c.toml").write_text("steps = 10\nactivation = 'tanh'\n")
    result = invoke("--config", tmp_path / "c.json", "--seed", 4, "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (config["weight_decay"], config["steps"], config["seed"]) == (0.5, 10, 4)
    result = invoke("--config", tmp_path / "c.toml", "--out", tmp_path / "b")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "b" / "config.json").read_text())["activation"] == "tanh"
    (tmp_path / "p.json").write_text(json.dumps({"preset": "quick", "steps": 5}))
    assert invoke("--config", tmp_path / "p.json", "--out", tmp_path / "c").exit_code == 0
    assert json.loads((tmp_path / "c" / "config.json").read_text())["preset"] == "quick"
    assert invoke("--config", tmp_path / "p.json", "--preset", "paper", "--out", tmp_path / "d").exit_code == 0
    assert json.loads((tmp_path / "d" / "config.json").read_text())["preset"] == "paper"


@pytest.mark.parametrize("batch", [None, 9])
def test_stop_and_resume_is_bit_identical(tmp_path, batch):
    extra = [] if batch is None else ["--batch-size", batch]
    assert invoke("--steps", 40, "--out", tmp_path / "straight", *extra).exit_code == 0
    assert invoke("--steps", 20, "--out", tmp_path / "split", *extra).exit_code == 0
    result = invoke("--steps", 40, "--out", tmp_path / "split", "--resume", *extra)
    assert result.exit_code == 0, result.output
    a, b = model_params(tmp_path / "straight"), model_params(tmp_path / "split")
    for name in rnn.PARAM_NAMES:
        assert np.array_equal(a[name], b[name]), name
    rows = runs.read_metrics(tmp_path / "split" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(0, 41, 5))


def test_resume_after_a_crash_drops_metrics_past_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    assert invoke("--steps", 40, "--out", run).exit_code == 0
    assert invoke("--steps", 40, "--out", tmp_path / "ref").exit_code == 0
    # as if killed at step 27: newer checkpoints gone, metrics past 27 and a torn line left
    for name in ("step_0000030.npz", "step_0000040.npz"):
        (run / "checkpoints" / name).unlink()
    (run / "model.npz").unlink()
    rows = runs.read_metrics(run / "metrics.jsonl")
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= 25) + '{"step": 3')
    (run / "checkpoints" / ".step_0000030.npz.abc.tmp").write_bytes(b"torn")
    result = invoke("--steps", 40, "--out", run, "--resume")
    assert result.exit_code == 0, result.output
    assert "skipped unreadable line 7" in result.output                    # the torn line, named
    assert [r["step"] for r in runs.read_metrics(run / "metrics.jsonl")] == list(range(0, 41, 5))
    assert not list((run / "checkpoints").glob(".*.tmp"))
    a, b = model_params(run), model_params(tmp_path / "ref")
    assert all(np.array_equal(a[n], b[n]) for n in rnn.PARAM_NAMES)


def test_stop_at_ends_at_the_first_evaluation_that_meets_the_bar(tmp_path):
    """A bar the untrained model misses (test accuracy 1/12 at step 0), met mid-run: only
    the in-loop check can stop it there."""
    result = invoke("--p", 11, "--frac", 0.9, "--d-embed", 16, "--d-hidden", 32, "--lr", 0.01, "--steps", 1500,
                    "--eval-every", 50, "--stop-at", 0.3, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    rows = runs.read_metrics(tmp_path / "r" / "metrics.jsonl")
    assert rows[0]["test_acc"] < 0.3 and all(r["test_acc"] < 0.3 for r in rows[:-1])
    assert rows[-1]["test_acc"] >= 0.3 and 0 < rows[-1]["step"] < 1500
    assert checkpoint.load(tmp_path / "r" / "model.npz")[1]["step"] == rows[-1]["step"]


def test_divergence_stops_with_a_message_and_keeps_good_checkpoints(tmp_path):
    run = tmp_path / "r"
    result = invoke("--steps", 200, "--lr", 1e32, "--out", run)
    assert result.exit_code == 1
    assert "non-finite at step" in result.output and "Traceback" not in result.output
    for path in (run / "checkpoints").glob("step_*.npz"):
        checkpoint.load(path)   # every checkpoint left behind is whole and finite


BAD = [
    (["--p", "1"], "p must be at least 2"),
    (["--frac", "0"], "frac must lie strictly between 0 and 1"),
    (["--frac", "1.5"], "frac must lie strictly between 0 and 1"),
    (["--d-hidden", "0"], "d-hidden must be positive"),
    (["--d-embed", "-3"], "d-embed must be positive"),
    (["--steps", "0"], "steps must be positive"),
    (["--batch-size", "0"], "batch-size must be positive"),
    (["--lr", "-1"], "lr must be positive"),
    (["--threads", "0"], "threads must be positive"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_settings_are_one_line_errors(tmp_path, args, message):
    result = CliRunner().invoke(main, ["train", *TINY, "--steps", "5", *args, "--out", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag, value", [("--activation", "gelu"), ("--dtype", "float16"), ("--cell", "gur"),
                                         ("--backend", "tpu")])
def test_a_closed_set_is_a_choice_refused_by_click(tmp_path, flag, value):
    """Every closed set is a click Choice: exit status 2, the usage line and one error line
    naming the choices, as for `fourier --backend`."""
    result = CliRunner().invoke(main, ["train", *TINY, "--steps", "5", flag, value, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("Usage: ") and f"Invalid value for '{flag}': '{value}' is not one of" in result.output
    assert [line for line in result.output.splitlines() if line.startswith("Error:")] == \
        [line for line in result.output.splitlines() if "Invalid value" in line]
    assert not (tmp_path / "r").exists()


def test_folders_that_must_not_be_touched(tmp_path):
    existing = tmp_path / "run"
    assert invoke("--steps", 10, "--out", existing).exit_code == 0
    before = digest(existing)
    cases = [
        (["--out", existing], "already holds a run; pass --resume"),
        (["--out", existing, "--resume", "--lr", "0.5"], "lr differs"),
        (["--out", existing, "--resume", "--overwrite"], "exclude each other"),
        (["--out", tmp_path / "nothing", "--resume"], "nothing to resume"),
    ]
    (tmp_path / "file").write_text("precious")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("precious")
    cases += [
        (["--out", tmp_path / "file"], "is a file, not a run folder"),
        (["--out", tmp_path / "file" / "sub"], "cannot write to"),
        (["--out", tmp_path / "other", "--overwrite"], "holds no tinymod run"),
    ]
    for args, message in cases:
        result = invoke("--steps", 10, *args)
        assert result.exit_code != 0, args
        assert message in result.output and "Traceback" not in result.output, result.output
    assert digest(existing) == before
    assert (tmp_path / "file").read_text() == "precious"
    assert (tmp_path / "other" / "notes.txt").read_text() == "precious"
    (existing / "fourier.json").write_text("{}")              # an old analysis output
    assert invoke("--steps", 10, "--out", existing, "--overwrite", "--seed", 5).exit_code == 0
    assert json.loads((existing / "config.json").read_text())["seed"] == 5
    assert not (existing / "fourier.json").exists()


def test_bad_config_files(tmp_path):
    cases = {"unknown.json": ('{"lr": 0.1, "colour": "red"}', "unknown keys: colour"),
             "broken.json": ("{lr: ", "is not valid JSON"),
             "broken.toml": ("lr = = 1", "is not valid TOML"),
             "typed.json": ('{"steps": "many"}', "steps must be int")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        result = invoke("--config", tmp_path / name, "--out", tmp_path / "r")
        assert result.exit_code != 0 and message in result.output, result.output
    result = invoke("--config", tmp_path / "absent.json", "--out", tmp_path / "r")
    assert result.exit_code != 0 and "cannot read config file" in result.output


def test_corrupt_or_truncated_checkpoint_on_resume(tmp_path):
    run = tmp_path / "run"
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    newest = run / "checkpoints" / "step_0000020.npz"
    newest.write_bytes(newest.read_bytes()[:100])
    before = digest(run)
    result = invoke("--steps", 30, "--out", run, "--resume")
    assert result.exit_code == 1 and "truncated or corrupt" in result.output
    assert "Traceback" not in result.output
    assert digest(run) == before


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_identically(tmp_path):
    steps = 20000   # far more than can finish before the signal arrives
    run = tmp_path / "my run"                 # the resume hint quotes a path with a space
    proc = spawn_training(run, steps)
    wait_for_checkpoint(run, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "Traceback" not in err
    assert f"tinymod train --out {shlex.quote(str(run))} --resume" in err, err
    stopped = max(int(p.stem[5:]) for p in (run / "checkpoints").glob("step_*.npz"))
    assert 0 < stopped < steps
    # resume to a nearby end and compare with a run that never stopped
    end = stopped + 7
    result = invoke("--steps", end, "--checkpoint-every", 50, "--out", run, "--resume")
    assert result.exit_code == 0, result.output
    assert invoke("--steps", end, "--checkpoint-every", 50, "--out", tmp_path / "ref").exit_code == 0
    a, b = model_params(run), model_params(tmp_path / "ref")
    assert all(np.array_equal(a[n], b[n]) for n in rnn.PARAM_NAMES)


def test_sigkill_leaves_only_whole_checkpoints(tmp_path):
    for delay in (0.0, 0.13, 0.31):
        run = tmp_path / f"run{delay}"
        proc = spawn_training(run, 20000)
        wait_for_checkpoint(run, proc)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        for path in (run / "checkpoints").glob("step_*.npz"):
            checkpoint.load(path)   # raises on a torn file


class _Terminal:
    def __init__(self):
        self.text = ""

    def isatty(self):
        return True

    def write(self, s):
        self.text += s

    def flush(self):
        pass


def test_progress_is_a_live_bar_on_a_terminal_and_lines_elsewhere():
    import io
    row = {"step": 0, "train_loss": 4.7, "train_acc": 0.01, "test_loss": 4.7, "test_acc": 0.0, "seconds": 0}
    rows = [{**row, "step": s, "test_acc": s / 1000} for s in range(0, 1001, 10)]
    term, pipe = _Terminal(), io.StringIO()
    for stream in (term, pipe):
        progress = ProgressBar(stream)
        progress.start(0, 1000, rows[0])
        for r in rows[1:]:
            progress.update(r["step"], r)
        progress.close()
    assert term.text.count("\r") == len(rows) and "[####################]" in term.text
    lines = pipe.getvalue().splitlines()
    assert 15 <= len(lines) <= 25 and "\r" not in pipe.getvalue()
    assert lines[-1].startswith("step 1000/1000") and "test loss" in lines[-1]


def test_stop_after_grok_stops_at_the_multiple_of_the_grok_step():
    config = train.TrainConfig(stop_after_grok=3)
    rows = lambda accs: [{"step": 100 * i, "test_acc": a} for i, a in enumerate(accs)]
    assert train._stop_rule(config, rows([0.1, 0.5, 0.99, 1.0, 1.0])) == "steps"          # grok 200, at 400
    assert train._stop_rule(config, rows([0.1, 0.5, 0.99, 1.0, 1.0, 1.0, 1.0])) == "stop_after_grok"   # at 600
    assert train._stop_rule(config, rows([0.1] * 20)) == "steps"                           # never grokked
    assert train._stop_rule(train.TrainConfig(stop_at=0.5), rows([0.1, 0.5])) == "stop_at"


@pytest.mark.parametrize("value", ["0.5", "inf", "nan"])
def test_stop_after_grok_refuses_a_multiple_below_one(tmp_path, value):
    result = invoke("--steps", 10, "--stop-after-grok", value, "--out", tmp_path / "r")
    assert result.exit_code == 1 and "stop-after-grok must be" in result.output
    assert not (tmp_path / "r").exists()
