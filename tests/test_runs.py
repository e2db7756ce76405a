"""Contract 3 under attack: the atomic writer, the lock, resume against mismatched or damaged
checkpoints, damaged metrics, the newest checkpoint, and outputs that say which step they
describe."""
import json
import os
import signal
import stat

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import digest, invoke, spawn_training, wait_for_checkpoint
from tinymod.training import checkpoint, runs, train
from tinymod.cli import main
from tinymod.errors import TinymodError



# --- the atomic writer -----------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        runs.write_text(tmp_path / "a.txt", "hello")
        checkpoint.save(tmp_path / "m.npz", train.rnn.init_params(3, 2, 2), {"p": 3})
    finally:
        os.umask(old)
    for name in ("a.txt", "m.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "report.md"
    runs.write_text(path, "old")

    def broken(f):
        f.write("half")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        runs.atomic_write(path, broken, binary=False)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


# --- metrics and the newest checkpoint ---------------------------------------------------------

def test_a_corrupt_metrics_line_is_named_and_the_rows_after_it_kept(tmp_path):
    path = tmp_path / "metrics.jsonl"
    row = lambda step: json.dumps({name: step if name == "step" else 0.5 for name in runs.METRIC_FIELDS})
    path.write_text(f'{row(0)}\n{{"step": 5, oops\n{row(10)}\n[1, 2]\n{row(15)}\n{{"step": 20}}\n')
    with pytest.warns(UserWarning, match=r"skipped unreadable lines 2, 4, 6"):
        rows = runs.read_metrics(path)
    assert [r["step"] for r in rows] == [0, 10, 15]


def test_resume_keeps_every_valid_metrics_row(tmp_path):
    run = tmp_path / "run"
    assert invoke("--steps", 30, "--out", run).exit_code == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:9]                               # damage the step-10 row
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    result = invoke("--steps", 40, "--out", run, "--resume")
    assert result.exit_code == 0, result.output
    assert "skipped unreadable line 3" in result.output
    steps = [r["step"] for r in runs.read_metrics(run / "metrics.jsonl")]
    assert steps == [0, 5, 15, 20, 25, 30, 35, 40]      # nothing after the bad line was lost


def test_newest_checkpoint_is_by_parsed_step_and_confirmed_by_the_file(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("step_9999999.npz", "step_10000000.npz", "step_0000500.npz", "notes.npz"):
        (folder / name).write_bytes(b"x")
    assert runs.newest_checkpoint(tmp_path)[0].name == "step_10000000.npz"
    says = {"step_10000000.npz": 9, "step_9999999.npz": 9999999}
    path, failed = runs.newest_checkpoint(tmp_path, lambda p: says[p.name])
    assert path.name == "step_9999999.npz"
    assert failed[0][0].name == "step_10000000.npz" and "config says step 9" in failed[0][1]


# --- resume against a checkpoint that does not belong ------------------------------------------

def _replace_newest(run, other_run):
    """Put other_run's step-10 checkpoint in place of run's newest (step 20)."""
    target = run / "checkpoints" / "step_0000020.npz"
    params, config, opt = checkpoint.load(other_run / "checkpoints" / "step_0000010.npz")
    checkpoint.save(target, params, {**config, "step": 20}, opt and {**opt, "t": np.int64(20)})


@pytest.mark.parametrize("other, message", [
    (["--p", "11"], "made with p = 11, but the run has p = 7"),
    (["--dtype", "float64"], "made with dtype = 'float64', but the run has dtype = 'float32'"),
    (["--seed", "3"], "made with seed = 3"),
    (["--frac", "0.5"], "made with frac = 0.5"),
    (["--activation", "tanh"], "made with activation = 'tanh'"),
    (["--seq-len", "3"], "made with seq_len = 3"),
])
def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, other, message):
    run, stranger = tmp_path / "run", tmp_path / "stranger"
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    assert invoke("--steps", 10, "--out", stranger, *other).exit_code == 0
    _replace_newest(run, stranger)
    before = digest(run)
    result = invoke("--steps", 30, "--out", run, "--resume")
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and digest(run) == before


@pytest.mark.parametrize("damage, message", [
    ("no optimiser", "has no optimiser state"),
    ("optimiser behind", "the optimiser has taken 7 steps, but the checkpoint is at step 20"),
    ("negative step", "config step must be"),
])
def test_resume_refuses_a_checkpoint_with_a_bad_optimiser_state(tmp_path, damage, message):
    run = tmp_path / "run"
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    path = run / "checkpoints" / "step_0000020.npz"
    params, config, opt = checkpoint.load(path)
    if damage == "no optimiser":
        checkpoint.save(path, params, config)
    elif damage == "optimiser behind":
        checkpoint.save(path, params, config, {**opt, "t": np.int64(7)})
    else:
        checkpoint.save(path, params, {**config, "step": -1}, opt)
    result = invoke("--steps", 30, "--out", run, "--resume")
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_a_truncated_newest_checkpoint_is_named_and_the_newest_valid_offered(tmp_path):
    run = tmp_path / "run"
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    newest = run / "checkpoints" / "step_0000020.npz"
    newest.write_bytes(newest.read_bytes()[:100])
    result = invoke("--steps", 30, "--out", run, "--resume")
    assert result.exit_code == 1 and "step_0000020.npz cannot be resumed from" in result.output
    assert "newest valid checkpoint is step_0000010.npz" in result.output
    newest.rename(run / "set-aside.npz.bad")
    assert invoke("--steps", 30, "--out", run, "--resume").exit_code == 0


# --- the lock -----------------------------------------------------------------------------------

def test_a_folder_being_trained_is_locked_and_a_dead_lock_taken_over(tmp_path):
    run = tmp_path / "run"
    proc = spawn_training(run, 200000)
    wait_for_checkpoint(run, proc)
    try:
        for extra in (["--resume"], ["--overwrite"]):
            result = invoke("--steps", 10, "--out", run, *extra)
            assert result.exit_code == 1, result.output
            assert f"is in use by process {proc.pid}" in result.output and "cannot be trained now" in result.output, result.output
            assert len(result.output.strip().splitlines()) == 1
        # analysis commands may read while it trains
        newest, _ = runs.newest_checkpoint(run)
        result = CliRunner().invoke(main, ["svd", str(newest), "--out", str(tmp_path / "a")])
        assert result.exit_code == 0, result.output
    finally:
        proc.kill()
        proc.wait()
    result = invoke("--steps", 60, "--out", run, "--resume")       # the dead owner's lock is free
    assert result.exit_code == 0, result.output


# --- Ctrl-C twice, stale analyses, step-named outputs --------------------------------------------

def test_a_second_ctrl_c_aborts_at_once(monkeypatch, tmp_path):
    flags = []
    handler = train._sigint_handler(flags)
    handler(signal.SIGINT, None)                     # first press: finish the step, save, stop
    assert flags == [True]
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGINT, None)                 # second press: now

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "run", interrupted)
    result = invoke("--steps", 10, "--out", tmp_path / "r")
    assert result.exit_code == 130 and "aborted by a second Ctrl-C" in result.output


def test_extending_a_run_removes_analyses_of_the_old_model(tmp_path):
    run = tmp_path / "run"
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    assert CliRunner().invoke(main, ["svd", str(run)]).exit_code == 0
    assert json.loads((run / "svd.json").read_text())["model_step"] == 20
    assert invoke("--steps", 30, "--out", run, "--resume").exit_code == 0
    assert not (run / "svd.json").exists() and not (run / "singular_values.png").exists()


def test_analyses_of_a_checkpoint_go_into_a_folder_named_for_it(tmp_path):
    run = tmp_path / "run"
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    for step in ("0000010", "0000020"):
        result = CliRunner().invoke(main, ["svd", str(run / "checkpoints" / f"step_{step}.npz")])
        assert result.exit_code == 0, result.output
        saved = json.loads((run / "checkpoints" / f"step_{step}" / "svd.json").read_text())
        assert saved["model_step"] == int(step)
    assert not (run / "checkpoints" / "svd.json").exists()
    result = CliRunner().invoke(main, ["report", str(run / "checkpoints" / "step_0000010.npz")])
    assert result.exit_code == 0, result.output
    assert "The model at step 10." in (run / "checkpoints" / "step_0000010" / "report.md").read_text()


def test_the_lock_file_does_not_make_a_folder_foreign(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / runs.LOCK).write_text("")
    assert invoke("--steps", 5, "--out", run).exit_code == 0
    with pytest.raises(TinymodError, match="nothing to resume"):
        train.prepare_run(train.TrainConfig(), tmp_path / "empty", resume=True)


# --- hostile files ------------------------------------------------------------------------------

def _checkpoint_with(tmp_path, extra=None, config_changes=None, header_shape=None):
    """A valid tiny checkpoint, rewritten member by member with the given changes."""
    import io
    import zipfile
    good = tmp_path / "good.npz"
    params = train.rnn.init_params(7, 4, 5)
    checkpoint.save(good, params, {"p": 7, "d_embed": 4, "d_hidden": 5, "activation": "relu",
                                   "seq_len": 2, "frac": 0.5, "seed": 0, "step": 0,
                                   **(config_changes or {})})
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if header_shape and info.filename == "E.npy":
                buf = io.BytesIO()
                np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                                           "shape": header_shape})
                data = buf.getvalue() + b"\0" * 64
            dst.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            dst.writestr(name, data)
    return bad


def _refused_quickly(path, message):
    import time as clock
    import tracemalloc
    tracemalloc.start()
    start = clock.perf_counter()
    with pytest.raises(TinymodError, match=message):
        checkpoint.load(path)
    seconds = clock.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1.0 and peak < 20 * 2**20, (seconds, peak)


def test_an_extra_member_is_refused_before_anything_is_decompressed(tmp_path):
    zeros = np.zeros(2_000_000, np.uint8).tobytes()          # compresses to almost nothing
    _refused_quickly(_checkpoint_with(tmp_path, extra={"junk.npy": zeros}), "unexpected arrays: junk.npy")


def test_a_header_declaring_320_gb_is_refused_in_milliseconds(tmp_path):
    _refused_quickly(_checkpoint_with(tmp_path, header_shape=(2_000_000, 40_000)),
                     r"E has shape \(2000000, 40000\), expected \(7, 4\)")
    huge = {"p": 4_000_000, "d_embed": 4, "d_hidden": 10_000}
    _refused_quickly(_checkpoint_with(tmp_path, config_changes=huge), "declares a model of")


@pytest.mark.parametrize("changes, message", [
    ({"frac": "0.5"}, "frac must be a number in"),
    ({"frac": 1.5}, "frac must be a number in"),
    ({"p": 7.0}, "p must be a positive integer"),
    ({"seed": True}, "seed must be a non-negative integer"),
    ({"dtype": "float16"}, "unknown dtype"),
])
def test_config_fields_are_type_checked(tmp_path, changes, message):
    with pytest.raises(TinymodError, match=message):
        checkpoint.load(_checkpoint_with(tmp_path, config_changes=changes))


def test_other_files_are_one_line_errors_that_never_suggest_pickle(tmp_path):
    np.save(tmp_path / "array.npy", np.arange(3))
    (tmp_path / "random.npz").write_bytes(os.urandom(4096))
    (tmp_path / "README.md").write_text("# not a model\n")
    for name in ("array.npy", "random.npz", "README.md"):
        result = CliRunner().invoke(main, ["svd", str(tmp_path / name)])
        assert result.exit_code == 1 and "is not a readable checkpoint" in result.output, result.output
        assert "pickle" not in result.output and len(result.output.strip().splitlines()) == 1


# --- settings refused before anything is computed ------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--seq-len", "1000000000"], "tuples is more than"),
    (["--p", "2236"], r"needs about \d+\.\d GiB of memory"),
    (["--d-hidden", "200000"], r"needs about \d+\.\d GiB of memory"),
])
def test_impossible_settings_are_refused_at_once(tmp_path, args, message):
    import time as clock
    start = clock.perf_counter()
    result = CliRunner().invoke(main, ["train", *args, "--out", str(tmp_path / "r")])
    assert clock.perf_counter() - start < 5
    assert result.exit_code == 1 and __import__("re").search(message, result.output), result.output
    assert not (tmp_path / "r").exists()


def test_construct_refuses_what_would_not_fit(tmp_path):
    result = CliRunner().invoke(main, ["construct", "--p", "100001", "--freqs", "3", "--out", str(tmp_path / "c")])
    assert result.exit_code == 1 and "needs about" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "c").exists()


def test_memory_estimate_counts_the_logits_of_a_step():
    from tinymod.training.config import preset
    for p, batch in ((2236, None), (113, None), (113, 64)):
        config = preset("default").replace(p=p, batch_size=batch)
        B = batch or round(config.frac * p * p)
        logits = 2 * 4 * B * p                     # float32 logits and their gradient
        assert logits < config.memory_bytes() < 3 * logits + 64 * 2**20


def test_report_on_a_model_without_key_frequencies_says_so(tmp_path):
    params = {k: np.zeros_like(v) for k, v in train.rnn.init_params(11, 4, 6).items()}
    checkpoint.save(tmp_path / "model.npz", params, {"p": 11, "d_embed": 4, "d_hidden": 6, "activation": "relu",
                                                     "seq_len": 2, "frac": 0.5, "seed": 0, "step": 0})
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("No frequency qualifies as key")      # stage lines go to stderr
    assert "No frequency qualifies as key" in (tmp_path / "report.md").read_text()
    f = json.loads((tmp_path / "fourier.json").read_text())
    assert f["in_use_key_frequencies"] == [] and f["fits"]["in_use"] is None     # no frequency: no fit
    assert f["key_curve"][0]["removal_loss_ratio"] == 1.0


def test_the_gpu_hint_names_a_command_that_works_from_a_clone():
    import importlib.util
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here")
    with pytest.raises(TinymodError, match=r"pip install '\.\[gpu\]'"):
        from tinymod.model import backend
        backend.get("cupy")


def test_a_hostile_config_json_is_a_one_line_error(tmp_path):
    run = tmp_path / "run"
    assert invoke("--steps", 10, "--out", run).exit_code == 0
    config = json.loads((run / "config.json").read_text())
    for bad, message in (({**config, "p": "7"}, "setting p must be int"), ([1, 2], "not a JSON object")):
        (run / "config.json").write_text(json.dumps(bad))
        result = invoke("--steps", 20, "--out", run, "--resume")
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output
