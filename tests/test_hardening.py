"""The run folder is a trust boundary, and every valid run can be analysed: links inside
a folder are refused or replaced, never followed; tinymod's own skeleton is reusable;
temporaries belong to their writer; writes that fail say which file and why in one line;
analyses work for any p, D, H (down to 1), T and activation."""
import errno
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import digest, invoke
from tinymod.cli import main
from tinymod.training import runs


def one_line_error(result, *phrases):
    """A non-zero exit whose error is one line (after any progress lines), with the phrases."""
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output and lines[-1].startswith("Error: "), result.output
    assert not any(line.startswith("Error") for line in lines[:-1]), result.output
    for phrase in phrases:
        assert phrase in lines[-1], result.output


# --- links -----------------------------------------------------------------------------------

def test_a_linked_lock_is_refused_and_its_target_untouched(tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / runs.LOCK).symlink_to(precious)
    one_line_error(invoke("--steps", 10, "--out", run), "is a symbolic link")
    assert precious.read_text() == "precious\n"
    assert invoke("--steps", 10, "--out", run, "--resume").exit_code == 1
    assert precious.read_text() == "precious\n"


@pytest.mark.parametrize("sub", [runs.CHECKPOINTS, runs.SNAPSHOTS])
def test_overwrite_never_deletes_through_a_linked_subfolder(tmp_path, sub):
    other, run = tmp_path / "other", tmp_path / "run"
    assert invoke("--steps", 20, "--out", other).exit_code == 0
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    before = digest(other)
    target = run / sub
    for path in target.iterdir():
        path.unlink()
    target.rmdir()
    target.symlink_to(other / sub)
    run_before = {name: (run / name).read_bytes() for name in (runs.CONFIG, runs.MODEL)}
    for flags in (["--overwrite"], ["--resume"]):
        one_line_error(invoke("--steps", 20, "--out", run, *flags), "is a symbolic link")
    assert digest(other) == before
    assert {name: (run / name).read_bytes() for name in run_before} == run_before   # refused before deleting


def test_linked_files_are_replaced_not_followed(tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("precious\n")
    run = tmp_path / "run"
    assert invoke("--steps", 10, "--out", run).exit_code == 0
    for name in (runs.CONFIG, runs.METRICS):
        (run / name).unlink()
        (run / name).symlink_to(precious)
    assert invoke("--steps", 10, "--out", run, "--overwrite").exit_code == 0
    assert precious.read_text() == "precious\n"
    assert not (run / runs.CONFIG).is_symlink() and not (run / runs.METRICS).is_symlink()


# --- tinymod's own skeleton --------------------------------------------------------------------

def test_a_killed_start_up_leaves_a_folder_that_trains_without_flags(tmp_path):
    run = tmp_path / "run"
    for sub in (runs.CHECKPOINTS, runs.SNAPSHOTS):
        (run / sub).mkdir(parents=True)
    (run / runs.LOCK).write_text("process 999999 (dead)\n")
    (run / runs.CHECKPOINTS / ".step_0000010.npz.999999-0123abcd.tmp").write_bytes(b"torn")
    assert invoke("--steps", 10, "--out", run).exit_code == 0
    assert (run / runs.MODEL).is_file()
    assert not list((run / runs.CHECKPOINTS).glob(".*.tmp"))


def test_a_foreign_file_still_makes_a_folder_not_a_run(tmp_path):
    run = tmp_path / "run"
    (run / runs.CHECKPOINTS).mkdir(parents=True)
    (run / runs.CHECKPOINTS / "notes.txt").write_text("mine")
    one_line_error(invoke("--steps", 10, "--out", run), "holds no tinymod run")


def test_a_step_name_with_unicode_digits_is_not_a_step(tmp_path):
    run = tmp_path / "run"
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    (run / runs.SNAPSHOTS / "step_².npz").write_bytes(b"x")
    assert runs.parse_step("step_².npz") is None
    result = invoke("--steps", 20, "--out", run, "--overwrite")
    assert result.exit_code == 0, result.output
    assert (run / runs.MODEL).is_file() and (run / runs.SNAPSHOTS / "step_².npz").is_file()


# --- temporaries and failed writes ---------------------------------------------------------------

def test_temporaries_of_a_living_writer_are_kept(tmp_path):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        mine = tmp_path / f".report.md.{alive.pid}-0123abcd.tmp"
        dead = tmp_path / ".report.md.999999-0123abcd.tmp"
        old = tmp_path / ".report.md.0123abcd.tmp"
        for path in (mine, dead, old):
            path.write_text("partial")
        runs.remove_stale_temporaries(tmp_path)
        assert mine.exists() and not dead.exists() and not old.exists()
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.parametrize("code, phrase", [(errno.ENOSPC, "no space left on the device"),
                                          (errno.EFBIG, "file-size limit"),
                                          (errno.EROFS, "cannot write")])
def test_a_failed_checkpoint_write_is_one_line_naming_the_file(tmp_path, monkeypatch, code, phrase):
    run = tmp_path / "run"
    real = os.fsync

    def failing(fd):
        if "step_0000010" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        return real(fd)
    monkeypatch.setattr(os, "fsync", failing)
    one_line_error(invoke("--steps", 20, "--out", run), "step_0000010.npz", phrase)
    assert not list((run / runs.CHECKPOINTS).glob(".*.tmp"))


def test_a_read_only_run_folder_says_cannot_write(tmp_path, monkeypatch):
    """As a read-only folder answers a writer (EROFS: root ignores a folder's mode bits)."""
    run = tmp_path / "run"
    assert invoke("--steps", 10, "--out", run).exit_code == 0
    real = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and str(run) in str(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, "open", read_only)
    for args in (["svd", str(run)], ["report", str(run)], ["train", "--steps", "20", "--resume", "--out", str(run)]):
        one_line_error(CliRunner().invoke(main, args), "cannot write", "Read-only file system")


def test_a_metrics_row_without_its_fields_is_skipped_and_named(tmp_path):
    run = tmp_path / "run"
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    with open(run / runs.METRICS, "a") as f:
        f.write('{"step": 5}\n')
    with pytest.warns(UserWarning, match="skipped unreadable line"):
        rows = runs.read_metrics(run / runs.METRICS)
    assert rows and all(set(runs.METRIC_FIELDS) <= set(r) for r in rows)
    result = invoke("--steps", 30, "--out", run, "--resume")
    assert result.exit_code == 0, result.output
    assert "Warning: " in result.output and "skipped unreadable line" in result.output


# --- every valid run can be analysed -------------------------------------------------------------

# the corners of the valid space, fixed (four random draws cost the suite most of a minute):
# the smallest p with width-1 layers, the largest here with three tokens, tanh beside relu
@pytest.mark.parametrize("p, D, H, T, activation", [(3, 1, 1, 2, "relu"), (7, 4, 1, 3, "tanh"),
                                                    (5, 1, 4, 3, "relu"), (3, 4, 4, 2, "tanh")])
def test_analyses_work_on_every_valid_run(tmp_path, p, D, H, T, activation):
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--preset", "quick", "--p", str(p), "--d-embed", str(D),
                                       "--d-hidden", str(H), "--seq-len", str(T), "--activation", activation,
                                       "--frac", "0.6", "--steps", "6", "--eval-every", "3",
                                       "--snapshot-every", "3", "--out", str(run)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["report", str(run)])      # fourier, svd, ablate, progress, control
    assert result.exit_code == 0, f"p={p} D={D} H={H} T={T} {activation}: {result.output}"
    fourier = json.loads((run / runs.FOURIER_JSON).read_text())
    assert fourier["p"] == p and fourier["key_curve"]
    assert (run / runs.PROGRESS_JSON).is_file() and (run / runs.CLAIMS_JSON).is_file()


# --- files of another run ---------------------------------------------------------------------------

def test_a_snapshot_of_another_run_is_refused_naming_the_setting(tmp_path):
    run, other = tmp_path / "run", tmp_path / "other"
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    assert invoke("--steps", 20, "--seed", 3, "--out", other).exit_code == 0
    (run / runs.SNAPSHOTS / "step_0000010.npz").write_bytes((other / runs.SNAPSHOTS / "step_0000010.npz").read_bytes())
    before = digest(run)
    one_line_error(CliRunner().invoke(main, ["progress", str(run)]), "step_0000010.npz", "seed = 3")
    assert digest(run) == before


def test_a_checkpoint_of_another_model_is_refused_before_its_arrays_are_read(tmp_path, monkeypatch):
    from tinymod.training import checkpoint
    run = tmp_path / "run"
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    params, config, opt = checkpoint.load(run / runs.CHECKPOINTS / "step_0000020.npz")
    checkpoint.save(run / runs.CHECKPOINTS / "step_0000030.npz", params,
                    {**config, "step": 30, "d_hidden": 14000}, opt)     # declares a 14000-wide model
    read = []
    real = checkpoint._member
    monkeypatch.setattr(checkpoint, "_member", lambda zf, key: read.append(key) or real(zf, key))
    with pytest.raises(Exception, match="made with d_hidden = 14000"):
        checkpoint.load(run / runs.CHECKPOINTS / "step_0000030.npz", expect=checkpoint.identity(config))
    assert read == ["config"]


def test_a_checkpoint_error_keeps_its_own_message(tmp_path):
    run = tmp_path / "run"
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    from tinymod.training import checkpoint
    with pytest.raises(Exception) as refused:
        checkpoint.load(run / runs.CHECKPOINTS / "step_0000020.npz", expect={"seed": 3})
    assert str(refused.value).startswith(f"{run / runs.CHECKPOINTS / 'step_0000020.npz'} was made with seed = 0")
    assert "truncated or corrupt" not in str(refused.value)


def test_resuming_a_run_that_stopped_at_its_bar_trains_no_further(tmp_path):
    from tinymod.training import checkpoint
    run = tmp_path / "run"
    assert invoke("--steps", 400, "--stop-at", 0.05, "--out", run).exit_code == 0
    stopped = checkpoint.load(run / runs.MODEL)[1]["step"]
    assert stopped < 400
    (run / runs.MODEL).unlink()
    assert invoke("--steps", 400, "--stop-at", 0.05, "--out", run, "--resume").exit_code == 0
    assert checkpoint.load(run / runs.MODEL)[1]["step"] == stopped
