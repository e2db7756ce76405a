"""The training loop: evaluation, metrics, checkpoints, resume, Ctrl-C and the progress line.

A run is a folder (DESIGN.md contract 3): config.json, metrics.jsonl (one line per
evaluation), checkpoints/step_NNNNNNN.npz every `checkpoint_every` steps, model.npz at
the end, and the training figures. Every step is deterministic (full batch, or a
minibatch drawn from default_rng([seed, step])), so a run that stops and resumes from its
newest checkpoint ends with bit-identical parameters to one that never stopped.
"""
import json
import math
from contextlib import nullcontext
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from tinymod import __version__, checkpoint, data, optim, plots, report, rnn
from tinymod import backend
from tinymod.backend import keep_freed_memory, namespace, to_numpy
from tinymod.config import FIELDS, TrainConfig
from tinymod.errors import TinymodError

GROK_ACC = 0.99
RESUMABLE_CHANGES = ("steps", "eval_every", "checkpoint_every", "snapshot_every", "stop_at")
# everything a run folder can hold, training and analysis outputs (removed by --overwrite)
RUN_FILES = ("config.json", "metrics.jsonl", "model.npz") + report.OUTPUTS


class Interrupted(Exception):
    """Ctrl-C: the run saved a checkpoint at `step` and stopped cleanly."""

    def __init__(self, step, path):
        super().__init__(f"interrupted at step {step}; checkpoint saved to {path}")
        self.step, self.path = step, path


# --- the run folder -------------------------------------------------------------------

def _ensure_writable(out):
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "checkpoints").mkdir(exist_ok=True)
        (out / checkpoint.SNAPSHOTS).mkdir(exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise TinymodError(f"cannot write to {out}: {e.strerror or e}") from None


def _read_run_config(out):
    try:
        saved = json.loads((out / "config.json").read_text())
        return TrainConfig(**{k: v for k, v in saved.items() if k in FIELDS})
    except (OSError, ValueError, TypeError) as e:
        raise TinymodError(f"{out / 'config.json'} is unreadable: {e}") from None


def prepare_run(config, out, resume=False, overwrite=False, overrides=()):
    """Check the folder and settle the config: refuse to clobber a run, or reload it.

    `overrides` names the settings the user gave explicitly; on resume only
    RESUMABLE_CHANGES may differ from the saved run.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TinymodError(f"{out} is a file, not a run folder")
    has_run = (out / "config.json").is_file()
    if out.is_dir() and any(out.iterdir()) and not has_run:
        raise TinymodError(f"{out} is not empty and holds no tinymod run; choose another --out")
    if resume:
        if not has_run:
            raise TinymodError(f"nothing to resume: {out} holds no run")
        saved = _read_run_config(out)
        for name in overrides:
            if name not in RESUMABLE_CHANGES and getattr(config, name) != getattr(saved, name):
                raise TinymodError(
                    f"--resume keeps the run's settings, but {name} differs "
                    f"({getattr(saved, name)!r} in the run, {getattr(config, name)!r} asked); "
                    f"only {', '.join(RESUMABLE_CHANGES)} may change")
        config = saved.replace(**{n: getattr(config, n) for n in overrides if n in RESUMABLE_CHANGES})
    elif has_run and not overwrite:
        raise TinymodError(f"{out} already holds a run; pass --resume to continue it "
                           f"or --overwrite to replace it")
    config.validate()
    backend.get(config.backend)                 # a missing CuPy or GPU fails before any file is made
    _ensure_writable(out)
    if has_run and overwrite and not resume:
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
        for old in [*(out / "checkpoints").glob("step_*.npz"),
                    *(out / checkpoint.SNAPSHOTS).glob("step_*.npz")]:
            old.unlink()
    return config, out


def _write_json(path, obj):
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def read_metrics(path):
    """The metrics rows of a run, skipping a torn last line left by a crash."""
    rows = []
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            break
    return rows


# --- the loop ---------------------------------------------------------------------------

def weight_norm(params):
    return math.sqrt(sum(float(np.sum(to_numpy(v).astype(np.float64) ** 2)) for v in params.values()))


def _evaluate(params, ds, config, step, seconds):
    train_loss, train_acc = rnn.evaluate(params, ds.x_train, ds.y_train, config.activation, 20000)
    test_loss, test_acc = rnn.evaluate(params, ds.x_test, ds.y_test, config.activation, 20000)
    return {"step": step, "train_loss": train_loss, "train_acc": train_acc,
            "test_loss": test_loss, "test_acc": test_acc,
            "weight_norm": weight_norm(params), "seconds": round(seconds, 3)}


def _batch(ds, host_train, config, step):
    """The step's examples: the whole (device-resident) train set, or a minibatch drawn
    on the host from default_rng([seed, step]) and moved to the device."""
    n = len(host_train[0])
    if config.batch_size is None or config.batch_size >= n:
        return ds.x_train, ds.y_train
    idx = np.random.default_rng([config.seed, step]).choice(n, config.batch_size, replace=False)
    xp = namespace(ds.x_train)
    return (backend.asarray(xp, host_train[0][idx], like=ds.x_train),
            backend.asarray(xp, host_train[1][idx], like=ds.x_train))


def _save(out, step, params, config, opt, seconds):
    path = out / "checkpoints" / checkpoint.checkpoint_name(step)
    meta = {**config.to_dict(), "step": step, "seconds": seconds, "version": __version__}
    return checkpoint.save(path, params, meta, opt.state_dict())


def _snapshot(out, step, params, config):
    """Parameters only (no optimiser state), for tinymod progress."""
    meta = {**config.to_dict(), "step": step, "version": __version__}
    checkpoint.save(out / checkpoint.SNAPSHOTS / checkpoint.checkpoint_name(step), params, meta)


def run(config, out, resume=False, overwrite=False, overrides=(), progress=None):
    """Train per `config` into the folder `out`; return the summary dict.

    Raises TinymodError for bad settings, folders or checkpoints and for divergence,
    and Interrupted after saving a checkpoint when Ctrl-C is pressed.
    """
    config, out = prepare_run(config, out, resume, overwrite, overrides)
    keep_freed_memory()
    xp = backend.get(config.backend)
    host = data.make_dataset(config.p, config.seq_len, config.frac, config.seed)
    ds = data.Dataset(*(backend.asarray(xp, a) for a in host))          # on the device
    params = rnn.init_params(config.p, config.d_embed, config.d_hidden, config.seed, config.dtype,
                             xp, like=ds.x_train)
    opt = optim.AdamW(params, config.lr, (config.beta1, config.beta2), config.eps, config.weight_decay)
    start, seconds = 0, 0.0
    latest = checkpoint.newest_checkpoint(out) if resume else None
    if latest is not None:
        saved_params, saved, opt_state = checkpoint.load(latest)
        params = {k: backend.asarray(xp, v, like=ds.x_train) for k, v in saved_params.items()}
        opt.load_state_dict(opt_state)
        start, seconds = saved["step"], saved.get("seconds", 0.0)
    for stale in [*(out / "checkpoints").glob(".*.tmp"),     # torn writes of a killed run
                  *(out / checkpoint.SNAPSHOTS).glob(".*.tmp")]:
        stale.unlink()
    snapshots = set(checkpoint.snapshot_steps(config.steps, config.snapshot_every))
    rows = [r for r in read_metrics(out / "metrics.jsonl") if r["step"] <= start] if resume else []
    _write_json(out / "config.json", {**config.to_dict(), "version": __version__,
                                      "numpy": np.__version__})

    limits = threadpool_limits(config.threads, user_api="blas") if config.threads else nullcontext()
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True)) \
        if _main_thread() else None
    stopped = "steps"
    step = start
    try:
        # overflow warnings are silenced: divergence is checked and reported below
        with open(out / "metrics.jsonl", "w") as metrics, limits, \
                np.errstate(over="ignore", invalid="ignore"):
            metrics.writelines(json.dumps(r) + "\n" for r in rows)   # kept from before a resume
            if not rows:
                rows.append(_evaluate(params, ds, config, 0, 0.0))
                if snapshots:
                    _snapshot(out, 0, params, config)
                metrics.write(json.dumps(rows[-1]) + "\n")
            t0 = time.perf_counter() - seconds
            if progress:
                progress.start(start, config.steps, rows[-1])
            while step < config.steps:
                step += 1
                x, y = _batch(ds, (host.x_train, host.y_train), config, step)
                loss, grads = rnn.loss_and_grads(params, x, y, config.activation)
                if not math.isfinite(loss):
                    _diverged(step, out)
                opt.step(params, grads)
                if step in snapshots:
                    _snapshot(out, step, params, config)
                seconds = time.perf_counter() - t0
                if step % config.eval_every == 0 or step == config.steps:
                    rows.append(_evaluate(params, ds, config, step, seconds))
                    metrics.write(json.dumps(rows[-1]) + "\n")
                    metrics.flush()
                    if progress:
                        progress.update(step, rows[-1])
                    if config.stop_at is not None and rows[-1]["test_acc"] >= config.stop_at:
                        stopped = "stop_at"
                        break
                if step % config.checkpoint_every == 0:
                    _check_finite(params, step, out)
                    _save(out, step, params, config, opt, seconds)
                if interrupted:
                    path = _save(out, step, params, config, opt, seconds)
                    raise Interrupted(step, path)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if progress:
            progress.close()
    _check_finite(params, step, out)
    if checkpoint.newest_checkpoint(out) != out / "checkpoints" / checkpoint.checkpoint_name(step):
        _save(out, step, params, config, opt, seconds)
    if snapshots and step not in snapshots:                  # stopped early: keep the end too
        _snapshot(out, step, params, config)
    meta = {**config.to_dict(), "step": step, "seconds": seconds, "version": __version__}
    checkpoint.save(out / "model.npz", params, meta)
    title = f"p = {config.p}, frac = {config.frac}, {config.activation}, preset {config.preset}"
    plots.training_curves(rows, out / "curves.png", title)
    plots.weight_norm(rows, out / "weight_norm.png", title)
    return summarize(rows, out, stopped)


def _diverged(step, out):
    last = checkpoint.newest_checkpoint(out)
    raise TinymodError(f"training diverged: the loss became non-finite at step {step}; "
                       f"last good checkpoint: {last or 'none'}; try a lower --lr")


def _check_finite(params, step, out):
    xp = namespace(params["E"])
    if not all(bool(xp.all(xp.isfinite(v))) for v in params.values()):
        _diverged(step, out)


def _main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def summarize(rows, out, stopped="steps"):
    last = rows[-1]
    grok = next((r for r in rows if r["test_acc"] >= GROK_ACC), None)
    return {"out": str(out), "step": last["step"], "seconds": last["seconds"],
            "train_acc": last["train_acc"], "test_acc": last["test_acc"],
            "train_loss": last["train_loss"], "test_loss": last["test_loss"],
            "grok_step": grok["step"] if grok else None,
            "grok_seconds": grok["seconds"] if grok else None, "stopped": stopped}


# --- the progress line ---------------------------------------------------------------------

class Progress:
    """A live bar on a terminal; on a pipe or in CI, about twenty plain lines per run."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def start(self, step, total, row):
        self.total, self.every = total, max(1, (total - step) // 20)
        self.last_line = step
        self._show(row, force=True)

    def update(self, step, row):
        if self.tty or step - self.last_line >= self.every or step == self.total:
            self.last_line = step
            self._show(row)

    def _show(self, row, force=False):
        done = row["step"] / self.total
        text = (f"step {row['step']:>{len(str(self.total))}}/{self.total} "
                f"| train loss {row['train_loss']:.3g} acc {100 * row['train_acc']:5.1f}% "
                f"| test loss {row['test_loss']:.3g} acc {100 * row['test_acc']:5.1f}% "
                f"| {row['seconds']:.0f}s")
        if self.tty:
            bar = "#" * int(20 * done) + "-" * (20 - int(20 * done))
            self.stream.write(f"\r[{bar}] {text}\x1b[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
