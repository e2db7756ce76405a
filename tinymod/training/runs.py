"""Contract 3, the run folder, in one place: file names, the list of outputs, the one atomic
writer every command writes through, the metrics reader and appender, the newest
checkpoint, and the lock that keeps two trainings out of one folder.

A run folder (`runs/<name>/`):
    config.json          every setting of the run              (write_json)
    metrics.jsonl        one JSON row per evaluation           (read_metrics, MetricsLog)
    checkpoints/step_NNNNNNN.npz   resumable checkpoints       (newest_checkpoint)
    snapshots/step_NNNNNNN.npz     parameters only             (list_snapshots)
    model.npz            the final model
    .lock                held by the training process          (tinymod.training.lock)
    analysis outputs     ANALYSIS_OUTPUTS, beside the model
"""
import errno
import json
import math
import os
import re
import shutil
import stat
import uuid
import warnings
from pathlib import Path

from tinymod.errors import TinymodError

CONFIG, METRICS, MODEL, LOCK = "config.json", "metrics.jsonl", "model.npz", ".lock"
CHECKPOINTS, SNAPSHOTS = "checkpoints", "snapshots"
CURVES_PNG, WEIGHT_NORM_PNG = "curves.png", "weight_norm.png"
TRAINING_FIGURES = (CURVES_PNG, WEIGHT_NORM_PNG)
# the analysis outputs, one name each (contract 5 writes them through tinymod.reports.pipeline)
FOURIER_JSON, SVD_JSON, ABLATION_JSON = "fourier.json", "svd.json", "ablation.json"
PROGRESS_JSON, CONTROL_JSON, REPORT_MD = "progress.json", "control.json", "report.md"
CLAIMS_JSON = "claims.json"
PROGRESS_PNG, SPECTRA_PNG, KEY_CURVE_PNG = "progress.png", "fourier_spectra.png", "key_curve.png"
HIDDEN_2D_PNG, NEURONS_PNG = "hidden_spectrum_2d.png", "neurons_per_frequency.png"
CLOCK_PNG, CLOCK_THROUGH_TIME_PNG = "clock.png", "clock_through_time.png"
SINGULAR_VALUES_PNG = "singular_values.png"
ABLATION_SINGLE_PNG, ABLATION_CUMULATIVE_PNG = "ablation_single.png", "ablation_cumulative.png"
ANALYSIS_FIGURES = (PROGRESS_PNG, SPECTRA_PNG, HIDDEN_2D_PNG, NEURONS_PNG, CLOCK_PNG,
                    CLOCK_THROUGH_TIME_PNG, KEY_CURVE_PNG, SINGULAR_VALUES_PNG,
                    ABLATION_SINGLE_PNG, ABLATION_CUMULATIVE_PNG)
ANALYSIS_OUTPUTS = (FOURIER_JSON, SVD_JSON, ABLATION_JSON, PROGRESS_JSON, CONTROL_JSON,
                    CLAIMS_JSON, REPORT_MD) + ANALYSIS_FIGURES
# a sweep folder's own files
SWEEP_JSON, SWEEP_CSV, SWEEP_REPORT_MD = "sweep.json", "sweep.csv", "sweep_report.md"
GROK_STEPS_PNG, PHASE_DIAGRAM_PNG = "grok_steps.png", "phase_diagram.png"
RUN_FILES = (CONFIG, METRICS, MODEL) + TRAINING_FIGURES + ANALYSIS_OUTPUTS
METRIC_FIELDS = ("step", "train_loss", "train_acc", "test_loss", "test_acc", "weight_norm", "seconds")
TEMPORARY = re.compile(r"\..+\.(?:([0-9]+)-)?[0-9a-f]{8}\.tmp")     # .<name>.<pid>-<id>.tmp


# --- names ------------------------------------------------------------------------------

def checkpoint_name(step):
    return f"step_{step:07d}.npz"


def parse_step(path):
    """The step in a `step_NNNNNNN.npz` name (ASCII digits), or None for any other name."""
    match = re.fullmatch(r"step_([0-9]+)\.npz", Path(path).name)
    return int(match.group(1)) if match else None


def stepped(folder):
    """[(step, path)] of the step_NNNNNNN.npz files in a folder, by parsed step."""
    found = [(parse_step(p), p) for p in Path(folder).glob("step_*.npz")]
    return sorted((s, p) for s, p in found if s is not None)


def analysis_folder(model_path):
    """Where the analyses of a model file go: beside a run's model.npz; for any other
    checkpoint, a folder named for it (checkpoints/step_0001000/), so that the analyses of
    two checkpoints never overwrite each other."""
    path = Path(model_path)
    return path.parent if path.name == MODEL else path.parent / path.stem


# --- reading ---------------------------------------------------------------------------------

MAX_TEXT = 256 * 2**20     # a metrics, config or grid file larger than this is not one of ours
KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device",
         stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def read_regular(path, what="file", limit=MAX_TEXT):
    """The bytes of `path`, which must be a regular file of at most `limit` bytes: a folder, a
    FIFO or a device (directly or behind a link) is refused in one line without blocking or
    reading it. FileNotFoundError passes through."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise TinymodError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise TinymodError(f"{what} {path} is {KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, "
                               f"not a regular file; tinymod reads only regular files")
        with os.fdopen(os.dup(fd), "rb") as f:        # fdopen refuses a folder itself: check first
            data = f.read(limit + 1)
    except OSError as e:
        raise TinymodError(f"cannot read {what} {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise TinymodError(f"{what} {path} is larger than {limit // 2**20} MiB: not a file tinymod wrote")
    return data


def unique_keys(pairs):
    """json.loads' object_pairs_hook: a key given twice is refused, not silently overwritten."""
    table = {}
    for key, value in pairs:
        if key in table:
            raise ValueError(f"key {key!r} is given twice")
        table[key] = value
    return table


# --- the folder ------------------------------------------------------------------------------

def refuse_links(out):
    """A link where tinymod keeps its own lock or subfolders is refused: writing or deleting
    through it would reach outside the run folder. (Files are replaced, never followed.)"""
    for name in (LOCK, CHECKPOINTS, SNAPSHOTS):
        if (Path(out) / name).is_symlink():
            raise link_refused(Path(out) / name)


def link_refused(path):
    return TinymodError(f"{path} is a symbolic link; tinymod does not write through links inside a "
                        f"run folder: remove it")


def _own_skeleton(path):
    """What tinymod itself leaves before a run has its config: the lock, empty subfolders,
    and its temporaries."""
    if path.name == LOCK or TEMPORARY.fullmatch(path.name):
        return True
    return path.name in (CHECKPOINTS, SNAPSHOTS) and path.is_dir() and not path.is_symlink() and \
        all(TEMPORARY.fullmatch(p.name) for p in path.iterdir())


def check_folder(out):
    """Refuse a path that cannot hold a run (a file; a folder with other things and no run;
    links inside it); True when it already holds one. A folder holding only tinymod's own
    skeleton (a stale lock, empty subfolders: a start-up that was killed) is reusable.
    Changes nothing."""
    out = Path(out)
    try:
        out.lstat()
    except FileNotFoundError:
        return False
    except OSError as e:                     # a name too long, a component that is a file, ...
        raise TinymodError(f"cannot write to {out}: {e.strerror or e}") from None
    if not out.is_dir():
        raise TinymodError(f"{out} is a file, not a run folder")
    refuse_links(out)
    if os.path.lexists(out / CONFIG) and not (out / CONFIG).is_file():
        read_regular(out / CONFIG, "run config")          # says what it is instead
    has_run = (out / CONFIG).is_file()
    foreign = [p.name for p in out.iterdir() if not _own_skeleton(p)]
    if foreign and not has_run:
        raise TinymodError(f"{out} is not empty and holds no tinymod run; choose another --out")
    return has_run


def open_folder(out):
    """Create the folder, take its lock, make the subfolders; returns the held RunLock."""
    lock = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        from tinymod.training.lock import RunLock
        lock = RunLock(out).acquire()
        (out / CHECKPOINTS).mkdir(exist_ok=True)
        (out / SNAPSHOTS).mkdir(exist_ok=True)
    except OSError as e:
        if lock is not None:
            lock.release()                  # a failed start never keeps the folder locked
        raise TinymodError(f"cannot write to {out}: {e.strerror or e}") from None
    return lock


def output_folder(out, default):
    """`out`, or the folder tinymod chose (`default`: beside the model, a checkpoint's
    analysis folder), made; a chosen folder that is a link is refused, never written through."""
    folder = Path(out) if out else Path(default)
    if not out and folder.is_symlink():
        raise link_refused(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TinymodError(f"cannot write to {folder}: {e.strerror or e}") from None
    return folder


def clear(out, names=(), subfolders=()):
    """Delete the named files and every stepped file (step_NNNNNNN.npz) in the subfolders,
    never descending into a link (a linked subfolder is refused before anything goes).
    config.json goes last: until then the folder still holds a run, so an interrupted or
    refused clearing leaves a folder that --overwrite accepts again. A folder that refuses
    its files' removal is found before anything goes."""
    refuse_links(out)
    doomed = [out / name for name in names] + [path for sub in subfolders for _, path in stepped(out / sub)]
    doomed.sort(key=lambda path: path.name == CONFIG)
    blocked = next((p for p in doomed if os.path.lexists(p) and not os.access(p.parent, os.W_OK)), None)
    if blocked is not None:
        raise TinymodError(f"cannot remove {blocked}: its folder is read-only; nothing was removed")
    for path in doomed:
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise TinymodError(f"cannot remove {path}: {e.strerror or e}; config.json is kept, so the same "
                               f"command can finish once that is mended") from None


# --- the one atomic writer ------------------------------------------------------------------

def atomic_write(path, write, binary=True):
    """Write `path` through `write(file)`, atomically: a temporary file in the same folder,
    flushed and fsynced, then os.replace, then the folder fsynced. A failure leaves no
    temporary file and the old file untouched. The file gets the mode the umask gives."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)     # 0o666 & ~umask
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise TinymodError(write_error(path, e)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def write_error(path, error):
    """One line for a failed write: the file, and why (the free space when the disk is full)."""
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        try:
            free = f"{shutil.disk_usage(Path(path).parent).free / 2**20:.1f} MiB free"
        except OSError:
            free = "free space unknown"
        return f"cannot write {path}: no space left on the device ({free}); the previous file is kept"
    if error.errno == errno.EFBIG:
        return f"cannot write {path}: larger than the file-size limit (ulimit -f); the previous file is kept"
    return f"cannot write {path}: {error.strerror or error}"


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:          # a platform without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path, text):
    return atomic_write(path, lambda f: f.write(text), binary=False)


def _strict(obj):
    """obj with every NaN or infinity as None: JSON has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    return obj


def write_json(path, obj):
    """Strict JSON (a NaN, say the FVU of a constant, is written as null), atomically."""
    return write_text(path, json.dumps(_strict(obj), indent=1, allow_nan=False) + "\n")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:        # someone else's process: alive
        pass
    return True


def remove_stale_temporaries(folder):
    """Delete the temporary files (`.<name>.<pid>-<id>.tmp`) that a dead writer left, or
    this process: another living process's (a report written while training resumes) stay."""
    refuse_links(folder)
    for sub in ("", CHECKPOINTS, SNAPSHOTS):
        for stale in Path(folder, sub).glob(".*.tmp"):
            match = TEMPORARY.fullmatch(stale.name)
            pid = int(match.group(1)) if match and match.group(1) else None
            if pid is None or pid == os.getpid() or not _alive(pid):
                stale.unlink(missing_ok=True)


# --- metrics ------------------------------------------------------------------------------

def read_metrics(path, warn=True):
    """The metrics rows of a run. A line that is not a JSON object with every metric (a torn
    last line after a crash, or damage) is skipped and named in a warning; every valid row
    after it is kept."""
    rows, bad = [], []
    try:
        lines = read_regular(path, "metrics file").decode(errors="replace").splitlines()
    except FileNotFoundError:
        return rows
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int) or \
                    not all(row.get(k) is None or isinstance(row.get(k), (int, float)) for k in METRIC_FIELDS) \
                    or not all(k in row for k in METRIC_FIELDS):
                raise ValueError
            rows.append({k: (math.nan if v is None else v) for k, v in row.items()})   # null: not finite
        except (ValueError, RecursionError):
            if line.strip():
                bad.append(number)
    if bad and warn:
        warnings.warn(f"{path}: skipped unreadable line{'s' if len(bad) > 1 else ''} "
                      f"{', '.join(map(str, bad))}", stacklevel=2)
    return rows


class MetricsLog:
    """metrics.jsonl for a training: rewritten atomically with the rows kept from before a
    resume, then appended one row per evaluation (flushed, so a crash loses at most the
    torn last line, which read_metrics skips)."""

    def __init__(self, path, kept_rows):
        self.path = Path(path)
        write_text(self.path, "".join(self.line(r) for r in kept_rows))
        self.file = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW), "a")

    @staticmethod
    def line(row):
        """One strict JSON line: a non-finite value (a diverged loss) is null."""
        return json.dumps(_strict(row), allow_nan=False) + "\n"

    def append(self, row):
        try:
            self.file.write(self.line(row))
            self.file.flush()
        except OSError as e:
            raise TinymodError(write_error(self.path, e).replace(
                "the previous file is kept", "the rows before this one are kept")) from None

    def close(self):
        try:
            self.file.close()
        except OSError:          # the write that failed has said so already
            pass


# --- checkpoints and snapshots -----------------------------------------------------------------

def newest_checkpoint(folder, loader=None):
    """The checkpoint in folder/checkpoints with the highest step parsed from its name,
    confirmed by the step in the file's own config when a `loader` (path -> config) is
    given. Returns (path or None, [(path, reason), ...] for newer files that failed)."""
    failed = []
    for step, path in reversed(stepped(Path(folder, CHECKPOINTS))):
        if loader is None:
            return path, failed
        try:
            saved = loader(path)
        except TinymodError as e:
            failed.append((path, str(e)))
            continue
        if saved != step:
            failed.append((path, f"its config says step {saved}, its name step {step}"))
            continue
        return path, failed
    return None, failed


def list_snapshots(folder):
    """[(step, path)] of a run's snapshots, by the step parsed from each name."""
    return stepped(Path(folder, SNAPSHOTS))
