"""Hardening, fourth round: files that are not what they claim, links and locks that are not
ours, numbers that are not settings. Each case was reproduced on the main before it; each
now gets one line and changes nothing outside the run folder."""
import errno
import json
import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import Phase, given, settings, strategies as st

from conftest import TINY, digest, invoke
from test_hardening import one_line_error
from tinymod.cli import main
from tinymod.errors import TinymodError
from tinymod.training import checkpoint, runs


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny finished run (checkpoints at 10 and 20), copied fresh by `run` for each test."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert invoke("--steps", 20, "--out", run).exit_code == 0
    return run


@pytest.fixture
def run(trained, tmp_path):
    import shutil
    copy = tmp_path / "run"
    shutil.copytree(trained, copy, symlinks=True)
    return copy


def special(kind, path):
    """Make `path` a FIFO, a folder or a link to /dev/zero."""
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")


# --- the lock -------------------------------------------------------------------------------------

def test_a_hard_linked_lock_is_refused_and_the_other_file_is_untouched(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    os.link(outside, run / runs.LOCK)
    one_line_error(invoke("--steps", 5, "--out", run), "hard link", "not tinymod's own lock")
    assert outside.read_text() == "keep me"
    from tinymod.training.lock import RunLock
    with pytest.raises(TinymodError, match="hard link"):
        RunLock(run, doing="swept").acquire()
    assert outside.read_text() == "keep me"


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_a_lock_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    run = tmp_path / "run"
    run.mkdir()
    special(kind, run / runs.LOCK)
    one_line_error(invoke("--steps", 5, "--out", run), "not tinymod's own lock")


# --- links the folder checks missed ---------------------------------------------------------------

def test_a_linked_checkpoint_analysis_folder_is_refused(run, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (run / runs.CHECKPOINTS / "step_0000010").symlink_to(other)
    for command in ("fourier", "svd", "ablate"):
        one_line_error(CliRunner().invoke(main, [command, str(run / runs.CHECKPOINTS / "step_0000010.npz")]),
                       "symbolic link")
    assert not list(other.iterdir())


# --- files that are not regular files -------------------------------------------------------------

@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_a_metrics_file_that_is_not_a_regular_file_is_one_line(run, kind):
    special(kind, run / runs.METRICS)
    for args in (["report", str(run)], ["train", "--steps", "30", "--out", str(run), "--resume"]):
        one_line_error(CliRunner().invoke(main, args), "metrics file", "not a regular file")


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_a_config_or_grid_that_is_not_a_regular_file_is_one_line(run, tmp_path, kind):
    special(kind, run / runs.CONFIG)
    one_line_error(invoke("--steps", 30, "--out", run, "--resume"), "not a regular file")
    for model in (run, run / runs.CHECKPOINTS / "step_0000010.npz"):     # not checked, so not analysed
        one_line_error(CliRunner().invoke(main, ["svd", str(model)]), "not a regular file")
    settings = tmp_path / "settings.json"
    special(kind, settings)
    result = invoke("--steps", 5, "--config", settings, "--out", tmp_path / "new")
    if kind == "folder":                   # click's own path check says so first
        assert result.exit_code == 2 and "is a directory" in result.output
    else:
        one_line_error(result, "not a regular file")
    assert not (tmp_path / "new").exists()
    from tinymod.scale import sweep
    with pytest.raises(TinymodError, match="grid file .* not a regular file"):
        sweep.read_grid(settings)


# --- checkpoints: layouts and zip members ---------------------------------------------------------

def _rewrite(path, change):
    """Rewrite a checkpoint's members through `change(name, array) -> array` (numpy.savez)."""
    with np.load(path, allow_pickle=False) as z:
        members = {name: change(name, z[name]) for name in z.files}
    with open(path, "wb") as f:
        np.savez(f, **members)


def test_big_endian_and_fortran_ordered_checkpoints_resume_like_the_native_one(run, tmp_path):
    native = tmp_path / "native"
    import shutil
    shutil.copytree(run, native)
    for folder in (run, native):
        (folder / runs.MODEL).unlink()
        for name in ("step_0000020.npz",):
            (folder / runs.CHECKPOINTS / name).unlink()
    _rewrite(run / runs.CHECKPOINTS / "step_0000010.npz",
             lambda name, a: a if a.ndim == 0 else (a.astype(a.dtype.newbyteorder(">")) if a.ndim == 1
                                                    else np.asfortranarray(a)))
    for folder in (run, native):
        result = invoke("--steps", 20, "--out", folder, "--resume")
        assert result.exit_code == 0, result.output
    a, b = checkpoint.load(run / runs.MODEL)[0], checkpoint.load(native / runs.MODEL)[0]
    assert all(np.array_equal(a[n], b[n]) for n in a)


def _patch_members(path, method=None, encrypted=False):
    """Mark every member of a zip as stored with compression `method` or as encrypted, in
    the local headers and the central directory alike."""
    data = bytearray(path.read_bytes())
    for signature, flags_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        start = data.find(signature)
        while start >= 0:
            if method is not None:
                data[start + method_at:start + method_at + 2] = struct.pack("<H", method)
            if encrypted:
                data[start + flags_at] |= 1
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", [{"method": 98}, {"encrypted": True}])
def test_a_member_in_an_unreadable_compression_is_one_line(run, how):
    _patch_members(run / runs.MODEL, **how)
    for command in ("fourier", "report"):
        one_line_error(CliRunner().invoke(main, [command, str(run)]), "does not read")


# --- configs and grids ----------------------------------------------------------------------------

def test_a_json_config_with_a_key_twice_is_refused(tmp_path):
    settings = tmp_path / "settings.json"
    settings.write_text('{"lr": 0.01, "lr": 0.02}')
    one_line_error(invoke("--steps", 5, "--config", settings, "--out", tmp_path / "r"), "'lr' is given twice")
    grid = tmp_path / "grid.json"
    grid.write_text('{"grid": {"seed": [0]}, "grid": {"seed": [1]}}')
    from tinymod.scale import sweep
    with pytest.raises(TinymodError, match="'grid' is given twice"):
        sweep.read_grid(grid)


def test_a_grid_that_names_one_run_twice_is_refused(tmp_path):
    from tinymod.scale import sweep
    grid = tmp_path / "grid.toml"
    grid.write_text('[[grid]]\nseed = [0]\n\n[[grid]]\nseed = [0]\nlr = [0.003]\n')    # 0.003: default's lr
    with pytest.raises(TinymodError, match="seed-0 and seed-0_lr-0.003 are the same run"):
        sweep.plan(grid)


@pytest.mark.parametrize("flag, value, phrase", [
    ("--d-embed", "1" + "0" * 330, "d-embed must be at most"),
    ("--d-hidden", "1" + "0" * 330, "d-hidden must be at most"),
    ("--steps", "1" + "0" * 330, "steps must be at most"),
    ("--eps", "inf", "eps must be finite"),
    ("--weight-decay", "inf", "weight-decay must be finite"),
    ("--lr", "nan", "lr must be positive"),
])
def test_numbers_that_are_not_settings_are_refused_before_any_folder(tmp_path, flag, value, phrase):
    one_line_error(invoke("--steps", 5, flag, value, "--out", tmp_path / "r"), phrase)
    assert not (tmp_path / "r").exists()


INT_FLAGS = ["--p", "--seq-len", "--d-embed", "--d-hidden", "--steps", "--batch-size", "--eval-every",
             "--checkpoint-every", "--snapshot-every", "--seed", "--threads"]       # the seed: below 2**63
FLOAT_FLAGS = ["--frac", "--lr", "--weight-decay", "--beta1", "--beta2", "--eps", "--grokfast-lambda",
               "--grokfast-alpha", "--stop-at", "--stop-after-grok"]


@given(case=st.one_of(
    st.sampled_from(INT_FLAGS).flatmap(lambda flag: st.tuples(st.just(flag), st.one_of(
        st.integers(2**63 if flag == "--seed" else 2**31, 10**400), st.integers(max_value=-1)).map(str))),
    st.tuples(st.sampled_from(FLOAT_FLAGS), st.sampled_from(["inf", "-inf", "nan", "1e400", "-1e400"]))))
def test_no_number_outside_a_setting_makes_a_folder_or_a_traceback(case):
    """Any integer flag above 2**31 - 1 (the seed: 2**63 - 1) or below 0, any float flag given
    a non-finite value: one line (click's usage error or tinymod's), and no folder."""
    import tempfile
    with tempfile.TemporaryDirectory() as base:
        out = Path(base) / "r"
        result = invoke("--steps", 5, *case, "--out", out) if case[0] != "--steps" else \
            CliRunner().invoke(main, ["train", "--preset", "quick", *case, "--out", str(out)])
        lines = result.output.strip().splitlines()
        assert result.exit_code in (1, 2) and "Traceback" not in result.output, result.output
        assert lines[-1].startswith("Error"), result.output
        assert not out.exists()


def test_an_out_name_the_file_system_refuses_is_one_line(tmp_path):
    one_line_error(invoke("--steps", 5, "--out", tmp_path / ("x" * 300)), "cannot write to", "File name too long")


def test_bench_refuses_more_threads_than_cores():
    result = CliRunner().invoke(main, ["bench", "--threads", "100000"])
    assert result.exit_code == 2 and "at most" in result.output


# --- metrics --------------------------------------------------------------------------------------

def test_a_non_finite_metric_is_null_in_the_file_and_nan_when_read(tmp_path):
    path = tmp_path / runs.METRICS
    log = runs.MetricsLog(path, [])
    row = {"step": 1, "train_loss": math.nan, "train_acc": 0.5, "test_loss": math.inf, "test_acc": 0.5,
           "weight_norm": 1.0, "seconds": 0.1}
    log.append(row)
    log.close()
    assert json.loads(path.read_text())["train_loss"] is None           # strict JSON
    back = runs.read_metrics(path)[0]
    assert math.isnan(back["train_loss"]) and math.isnan(back["test_loss"]) and back["train_acc"] == 0.5


def test_a_full_disk_while_appending_metrics_is_one_line(tmp_path):
    log = runs.MetricsLog(tmp_path / runs.METRICS, [])

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")
    log.file = Full()
    with pytest.raises(TinymodError, match="no space left on the device .* the rows before this one are kept"):
        log.append({"step": 1})
    log.close()


def test_config_json_records_whether_numba_ran(run):
    from tinymod.model.kernels import numba_enabled
    assert json.loads((run / runs.CONFIG).read_text())["numba"] is numba_enabled()


def test_nothing_outside_the_folder_changes_in_any_case(run, tmp_path):
    """The refusals above leave the run itself whole too: a refused resume with a FIFO for
    metrics changes no file of the run."""
    special("fifo", run / runs.METRICS)
    before = digest(run)
    one_line_error(invoke("--steps", 30, "--out", run, "--resume"), "not a regular file")
    assert digest(run) == before


# --- a resume that trains nothing; a report's dead temporaries ------------------------------------

def test_a_resume_that_would_train_nothing_changes_nothing(run):
    assert CliRunner().invoke(main, ["report", str(run)]).exit_code == 0
    before = {k: v for k, v in digest(run).items() if k != runs.LOCK}
    for steps in (10, 20):
        one_line_error(invoke("--steps", steps, "--out", run, "--resume"), "nothing to train", "nothing was changed")
    assert {k: v for k, v in digest(run).items() if k != runs.LOCK} == before
    assert (run / runs.REPORT_MD).is_file() and json.loads((run / runs.CONFIG).read_text())["steps"] == 20


def test_report_removes_the_temporaries_a_killed_report_left(run):
    dead = run / ".fourier.json.999999999-deadbeef.tmp"            # no such process
    dead.write_text("torn")
    assert CliRunner().invoke(main, ["report", str(run)]).exit_code == 0
    assert not dead.exists()


# --- identity is the whole state ------------------------------------------------------------------

def _checkpoint_members(path, change):
    with np.load(path, allow_pickle=False) as z:
        members = change({name: z[name] for name in z.files})
    with open(path, "wb") as f:
        np.savez(f, **members)


def _drop_model(run):
    (run / runs.MODEL).unlink()
    (run / runs.CHECKPOINTS / "step_0000020.npz").unlink()


def test_a_grokfast_checkpoint_without_its_filter_and_a_plain_one_with_a_filter_are_refused(tmp_path):
    filtered, plain = tmp_path / "filtered", tmp_path / "plain"
    assert invoke("--steps", 20, "--grokfast-lambda", 2, "--out", filtered).exit_code == 0
    assert invoke("--steps", 20, "--out", plain).exit_code == 0
    _drop_model(filtered)
    _drop_model(plain)
    _checkpoint_members(filtered / runs.CHECKPOINTS / "step_0000010.npz",
                        lambda m: {k: v for k, v in m.items() if not k.startswith("opt_gf_")})
    _checkpoint_members(plain / runs.CHECKPOINTS / "step_0000010.npz",
                        lambda m: {**m, **{f"opt_gf_{k}": v for k, v in m.items() if k in ("E", "W_ih", "W_hh",
                                                                                          "b_h", "W_out", "b_out")}})
    one_line_error(invoke("--steps", 30, "--out", filtered, "--resume"), "lacks the Grokfast filter's state")
    one_line_error(invoke("--steps", 30, "--out", plain, "--resume"), "holds the Grokfast filter's state")


def test_a_checkpoint_of_another_batch_size_is_refused(tmp_path):
    full, mini = tmp_path / "full", tmp_path / "mini"
    assert invoke("--steps", 20, "--out", full).exit_code == 0
    assert invoke("--steps", 20, "--batch-size", 8, "--out", mini).exit_code == 0
    _drop_model(full)
    (full / runs.CHECKPOINTS / "step_0000010.npz").write_bytes((mini / runs.CHECKPOINTS / "step_0000010.npz").read_bytes())
    one_line_error(invoke("--steps", 30, "--out", full, "--resume"), "batch_size = 8", "batch_size = None")


def test_a_resume_without_metrics_labels_its_first_row_and_snapshot_with_their_own_step(run):
    _drop_model(run)
    (run / runs.METRICS).unlink()
    zero = (run / runs.SNAPSHOTS / "step_0000000.npz").read_bytes()
    assert invoke("--steps", 20, "--out", run, "--resume").exit_code == 0
    rows = runs.read_metrics(run / runs.METRICS)
    assert rows[0]["step"] == 10 and [r["step"] for r in rows] == [10, 15, 20]
    assert (run / runs.SNAPSHOTS / "step_0000000.npz").read_bytes() == zero     # never relabelled


def test_a_foreign_model_is_refused_before_any_analysis_is_written(run, tmp_path):
    other = tmp_path / "other"
    assert invoke("--steps", 20, "--seed", 1, "--out", other).exit_code == 0
    (run / runs.MODEL).write_bytes((other / runs.MODEL).read_bytes())
    for name in runs.ANALYSIS_OUTPUTS:
        (run / name).unlink(missing_ok=True)
    for command in ("fourier", "report"):
        one_line_error(CliRunner().invoke(main, [command, str(run)]), "seed = 1", "the run has seed = 0")
    assert not any((run / name).exists() for name in runs.ANALYSIS_OUTPUTS)


# --- overwrite as a transaction -------------------------------------------------------------------

def test_overwrite_removes_config_json_last_and_a_refused_removal_leaves_a_run(run, monkeypatch):
    from pathlib import Path
    order, original = [], Path.unlink

    def refuse_a_snapshot(self, missing_ok=False):
        order.append(self.name)
        if self.name == "step_0000010.npz" and self.parent.name == runs.SNAPSHOTS:
            raise PermissionError(errno.EACCES, "Permission denied")
        return original(self, missing_ok=missing_ok)
    monkeypatch.setattr(Path, "unlink", refuse_a_snapshot)
    one_line_error(invoke("--steps", 20, "--out", run, "--overwrite"), "cannot remove", "config.json is kept")
    assert (run / runs.CONFIG).is_file() and runs.CONFIG not in order
    monkeypatch.setattr(Path, "unlink", original)
    assert invoke("--steps", 20, "--out", run, "--overwrite").exit_code == 0        # it can finish


def test_a_damaged_config_json_is_not_met_with_advice_to_overwrite(run):
    (run / runs.CONFIG).write_text("{not json")
    result = invoke("--steps", 30, "--out", run, "--resume")
    one_line_error(result, "is unreadable", "rather than --overwrite")


def test_an_analysis_too_big_for_memory_is_refused_before_any_array_is_inflated(tmp_path, monkeypatch):
    import zipfile
    from tinymod.model import limits, rnn
    shapes = rnn.param_shapes(113, 8, 600, "rnn")
    config = {"p": 113, "d_embed": 8, "d_hidden": 600, "activation": "relu", "seq_len": 2, "frac": 0.3,
              "seed": 0, "step": 0}
    plain = tmp_path / "plain.npz"
    checkpoint.save(plain, {k: np.full(s, 1e-3) for k, s in shapes.items()}, config)
    model = tmp_path / "wide.npz"         # deflated: a small file that declares a wide model
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(model, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    monkeypatch.setattr(limits, "available_memory", lambda: 512 << 20)
    inflated, member = [], checkpoint._member
    monkeypatch.setattr(checkpoint, "_member", lambda zf, key: inflated.append(key) or member(zf, key))
    for command in ("fourier", "svd", "ablate", "report"):
        result = CliRunner().invoke(main, [command, str(model)])
        one_line_error(result, "analysing all 113**2 tuples needs about")
        assert inflated == ["config"] and not (tmp_path / "wide").exists()
        inflated.clear()


def test_an_analysis_of_a_run_holds_its_lock_so_no_overwrite_replaces_the_model_under_it(run):
    from tinymod.training.lock import RunLock
    before = digest(run)
    with RunLock(run, doing="trained"):        # a training (an --overwrite) of the run
        for command in ("fourier", "svd", "ablate", "report", "progress"):
            one_line_error(CliRunner().invoke(main, [command, str(run)]), "in use by process",
                           "it cannot be analysed now")
        assert digest(run) == before
        result = CliRunner().invoke(main, ["fourier", str(run / "checkpoints" / "step_0000010.npz")])
        assert result.exit_code == 0, result.output        # a checkpoint is analysed in its own folder
    with RunLock(run, doing="analysed"):       # and an --overwrite waits for the analysis
        one_line_error(invoke("--steps", 20, "--out", run, "--overwrite"), "it cannot be trained now")
    assert CliRunner().invoke(main, ["svd", str(run)]).exit_code == 0      # released when it ends
    assert CliRunner().invoke(main, ["svd", str(run)]).exit_code == 0


@pytest.mark.long                # a real process: make test-long
def test_a_sigkill_during_overwrite_leaves_a_folder_that_overwrite_and_resume_accept(run, tmp_path):
    import shutil
    import signal
    import subprocess
    import sys
    import time
    from conftest import TINY
    snapshots = run / runs.SNAPSHOTS
    first = sorted(snapshots.iterdir())[0]
    for step in range(1000, 4000):                       # 3,000 snapshots for the clearing to remove
        shutil.copyfile(first, snapshots / f"step_{step:07d}.npz")
    count = len(os.listdir(snapshots))
    proc = subprocess.Popen([sys.executable, "-m", "tinymod", "train", *TINY, "--steps", "20", "--out", str(run),
                             "--overwrite"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(os.listdir(snapshots)) >= count and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)                     # mid-clearing, or later: either must be usable
    proc.wait()
    assert (run / runs.CONFIG).is_file()                 # config.json goes last: still a run
    result = invoke("--steps", 20, "--out", run, "--resume")
    if not list((run / runs.CHECKPOINTS).glob("step_*.npz")):
        one_line_error(result, "no checkpoint")
    else:
        assert result.exit_code == 0, result.output
    result = invoke("--steps", 20, "--out", run, "--overwrite")
    assert result.exit_code == 0, result.output
    assert max(step for step, _ in runs.list_snapshots(run)) == 20      # none of the old run is left


@pytest.mark.long                # a real process: make test-long
def test_matplotlib_writes_no_font_cache_into_home(run, tmp_path):
    import subprocess
    import sys
    home, temp = tmp_path / "home", tmp_path / "temp"
    home.mkdir()
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    done = subprocess.run([sys.executable, "-m", "tinymod", "svd", str(run)], capture_output=True, text=True,
                          env={**env, "HOME": str(home), "TMPDIR": str(temp)})
    assert done.returncode == 0 and (run / runs.SINGULAR_VALUES_PNG).is_file(), done.stderr
    assert list(home.iterdir()) == [] and list(temp.iterdir()) == []
    where = subprocess.run([sys.executable, "-c", "import pathlib, tinymod; print(pathlib.Path(tinymod.__file__)"
                            ".resolve().parent / '__pycache__' / 'matplotlib')"], capture_output=True, text=True)
    assert list(Path(where.stdout.strip()).glob("fontlist-*.json"))        # kept beside the kernels' cache


COMMANDS = {"svd": ["svd"], "ablate": ["ablate", "--seeds", "1"], "progress": ["progress"], "report": ["report"],
            "resume": ["train", *TINY, "--steps", "30", "--resume", "--out"]}
REFUSALS = dict(command=st.sampled_from(sorted(COMMANDS)), code=st.sampled_from(
    [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.ENAMETOOLONG, errno.EISDIR]),
    site=st.sampled_from(["open", "os.open", "mkdir", "replace", "unlink"]), nth=st.integers(0, 30))


@settings(max_examples=4, phases=(Phase.reuse, Phase.generate))      # no shrinking: each example is a few commands
@given(**REFUSALS)
def test_an_os_error_anywhere_in_a_command_is_one_line_and_the_folder_still_works(trained, **case):
    refused_once(trained, **case)


@pytest.mark.long
@settings(max_examples=80, phases=(Phase.generate,))
@given(**REFUSALS)
def test_many_os_errors_anywhere_are_one_line_and_the_folder_still_works(trained, **case):
    refused_once(trained, **case)


def refused_once(trained, command, code, site, nth):
    """The system refuses the nth call of one kind inside a copy of the run folder: one line
    with the path, nothing outside the folder touched, and the same command then succeeds on
    what was kept (a resume, asked for more steps: the first may have finished its own)."""
    import builtins
    import shutil
    import tempfile
    from unittest import mock
    base = Path(tempfile.mkdtemp())
    run = base / "run"
    shutil.copytree(trained, run, symlinks=True)
    (base / "outside").write_text("kept\n")
    target = {"open": (builtins, "open"), "os.open": (os, "open"), "mkdir": (os, "mkdir"),
              "replace": (os, "replace"), "unlink": (os, "unlink")}[site]
    real, calls = getattr(*target), []

    def refusing(path, *args, **kwargs):
        if isinstance(path, (str, os.PathLike)) and str(run) in os.fspath(path) and \
                not (site in ("os.open", "mkdir") and os.path.isdir(path)):   # a folder's fsync is best
            # effort, and pathlib's mkdir(exist_ok=True) rightly ignores a refusal for a folder that is there
            calls.append(path)
            if len(calls) == nth + 1:
                raise OSError(code, os.strerror(code), os.fspath(path))
        return real(path, *args, **kwargs)
    args = [*COMMANDS[command], str(run)]
    try:
        with mock.patch.object(*target, refusing):
            result = CliRunner().invoke(main, args)
        if len(calls) > nth:
            one_line_error(result, str(run))           # the path, and why
        else:
            assert result.exit_code == 0, result.output
        assert (base / "outside").read_text() == "kept\n" and sorted(os.listdir(base)) == ["outside", "run"]
        again = CliRunner().invoke(main, [a.replace("30", "40") for a in args] if command == "resume" else args)
        assert again.exit_code == 0, (site, calls[-1:], result.output, again.output)
    finally:
        shutil.rmtree(base)
