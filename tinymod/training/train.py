"""The training loop: set up or restore, the loop, and finish; evaluation, metrics,
checkpoints, snapshots, Ctrl-C and the progress line.

A run is a folder (contract 3, owned by `tinymod.training.runs`): config.json, metrics.jsonl (one
line per evaluation), checkpoints/step_NNNNNNN.npz every `checkpoint_every` steps,
snapshots/ for tinymod progress, model.npz at the end, and the training figures. Every
step is deterministic (full batch, or a minibatch drawn from default_rng([seed, step])),
so a run that stops and resumes from its newest checkpoint ends with bit-identical
parameters to one that never stopped. One training at a time holds a folder's lock.
"""
import json
import math
import signal
import statistics
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tinymod import __version__
from tinymod.model import backend, blocks, data, optim, rnn
from tinymod.training import checkpoint, runs
from tinymod.model.backend import namespace
from tinymod.model.kernels import numba_enabled
from tinymod.model.limits import EVAL_BATCH, GROK_ACC
from tinymod.training.config import FIELDS, TrainConfig, coerce
from tinymod.errors import TinymodError

RESUMABLE_CHANGES = ("steps", "eval_every", "checkpoint_every", "snapshot_every", "stop_at", "stop_after_grok")


class Interrupted(Exception):
    """Ctrl-C: the run saved a checkpoint at `step` and stopped cleanly."""

    def __init__(self, step, path):
        super().__init__(f"interrupted at step {step}; checkpoint saved to {path}")
        self.step, self.path = step, path


# --- set up or restore ------------------------------------------------------------------

def read_run_config(out):
    """The TrainConfig a run folder's config.json holds; TinymodError if it is unreadable."""
    try:
        saved = json.loads(runs.read_regular(out / runs.CONFIG, "run config"), object_pairs_hook=runs.unique_keys)
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise TinymodError(f"{out / runs.CONFIG} is unreadable ({e}); mend it rather than --overwrite, "
                           f"which would delete the run's checkpoints (each holds its settings)") from None
    try:
        return TrainConfig(**coerce({k: v for k, v in saved.items() if k in FIELDS}))
    except TinymodError as e:
        raise TinymodError(f"{out / runs.CONFIG}: {e}") from None


def prepare_run(config, out, resume=False, overwrite=False, overrides=()):
    """Check the folder and settle the config: refuse to clobber a run, or reload it.
    Nothing is created or changed until every check has passed.

    `overrides` names the settings the user gave explicitly; on resume only
    RESUMABLE_CHANGES may differ from the saved run.
    """
    out = Path(out)
    has_run = runs.check_folder(out)
    if resume:
        if not has_run:
            raise TinymodError(f"nothing to resume: {out} holds no run")
        saved = read_run_config(out)
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
    return config, out


def _fresh(config, xp, like):
    params = rnn.init_params(config.p, config.d_embed, config.d_hidden, config.seed, config.dtype,
                             xp, like=like, cell=config.cell)
    grad_filter = (optim.GrokfastEMA(params, config.grokfast_alpha, config.grokfast_lambda)
                   if config.grokfast_lambda > 0 else None)
    opt = optim.AdamW(params, config.lr, (config.beta1, config.beta2), config.eps, config.weight_decay,
                      grad_filter)
    return State(params, opt, 0, 0.0, [])


class State(NamedTuple):
    params: dict
    opt: optim.AdamW
    step: int
    seconds: float
    rows: list


def _restore(out, config, xp, like):
    """Fresh parameters and optimiser, or those of the newest valid checkpoint after
    checking it against the run: settings, dtype and the optimiser's state and step."""
    fresh = _fresh(config, xp, like)
    identity, loaded = checkpoint.identity(config.to_dict()), {}

    def step_of(path):          # each candidate is loaded once, checked against the run first
        loaded[path] = checkpoint.load(path, expect=identity)
        return loaded[path][1]["step"]
    latest, failed = runs.newest_checkpoint(out, step_of)
    if failed:
        bad, reason = failed[0]
        offer = (f"the newest valid checkpoint is {latest.name}: move {bad.name} aside to resume from it"
                 if latest else "no valid checkpoint is left: start again with --overwrite")
        raise TinymodError(f"{bad} cannot be resumed from ({reason}); {offer}")
    if latest is None:
        return fresh
    saved_params, saved, opt_state = loaded[latest]
    if saved_params["E"].dtype.name != config.dtype:
        raise TinymodError(f"{latest} holds {saved_params['E'].dtype.name} parameters, but the run is {config.dtype}")
    if opt_state is None:
        raise TinymodError(f"{latest} has no optimiser state, so training cannot continue exactly from it")
    filtered = any(k.startswith("gf_") for k in opt_state)
    if filtered != (config.grokfast_lambda > 0):        # the filter's average is part of the state
        raise TinymodError(f"{latest} {'holds' if filtered else 'lacks'} the Grokfast filter's state (opt_gf_*), "
                           f"but the run {'has no filter' if filtered else f'filters with lambda {config.grokfast_lambda:g}'}"
                           f"; it cannot be resumed exactly")
    if int(opt_state["t"]) != saved["step"]:
        raise TinymodError(f"{latest}: the optimiser has taken {int(opt_state['t'])} steps, "
                           f"but the checkpoint is at step {saved['step']}")
    params = {k: backend.asarray(xp, v, like=like) for k, v in saved_params.items()}
    fresh.opt.load_state_dict(opt_state)
    start = saved["step"]
    rows = [r for r in runs.read_metrics(out / runs.METRICS) if r["step"] <= start]
    return State(params, fresh.opt, start, saved.get("seconds", 0.0), rows)


def _set_up(config, out, resume, overwrite):
    """(dataset on the device, host dataset, State): a fresh run or a restored one."""
    xp = backend.get(config.backend)
    host = data.make_dataset(config.p, config.seq_len, config.frac, config.seed)
    ds = data.Dataset(*(backend.asarray(xp, a) for a in host))          # on the device
    if overwrite and not resume:
        runs.clear(out, runs.RUN_FILES, (runs.CHECKPOINTS, runs.SNAPSHOTS))
    state = _restore(out, config, xp, ds.x_train) if resume else _fresh(config, xp, ds.x_train)
    if resume:              # the model will move on: older analyses would describe another step
        runs.clear(out, runs.ANALYSIS_OUTPUTS)
    runs.remove_stale_temporaries(out)
    with blocks.threads_set(config.threads):
        machine = {"threads_used": blocks.threads(), "blas": blocks.blas_info(),
                   "numba": numba_enabled()}      # the compiled and the plain kernels differ in the last bits
    runs.write_json(out / runs.CONFIG, {**config.to_dict(), "version": __version__,
                                        "numpy": np.__version__, **machine})
    return ds, host, state


# --- the loop -----------------------------------------------------------------------------

def _evaluate(params, ds, config, step, seconds, step_times=()):
    """One metrics row; `step_ms`, the median wall time of the steps since the previous
    evaluation (None when there were none), lets a run's wait be set against its steps."""
    train_loss, train_acc = rnn.evaluate(params, ds.x_train, ds.y_train, config.activation, EVAL_BATCH, config.cell)
    test_loss, test_acc = rnn.evaluate(params, ds.x_test, ds.y_test, config.activation, EVAL_BATCH, config.cell)
    return {"step": step, "train_loss": train_loss, "train_acc": train_acc,
            "test_loss": test_loss, "test_acc": test_acc,
            "weight_norm": rnn.weight_norms(params)[0], "seconds": round(seconds, 3),
            "step_ms": round(1e3 * statistics.median(step_times), 3) if step_times else None}


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
    path = out / runs.CHECKPOINTS / runs.checkpoint_name(step)
    return checkpoint.save(path, params, checkpoint.metadata(config.to_dict(), step, seconds=seconds),
                           opt.state_dict())


SNAPSHOTS_PER_RUN = 50     # evenly spaced, by default ...
SNAPSHOTS_PER_DECADE = 12  # ... plus this many per decade of steps, to resolve the early phases


def snapshot_steps(steps, every=None):
    """The steps (ascending, 0 included) at which a run of `steps` steps keeps a parameter
    snapshot: every `every` steps, or, when None, SNAPSHOTS_PER_RUN evenly spaced plus
    SNAPSHOTS_PER_DECADE log-spaced ones; none when `every` is 0."""
    if every == 0:
        return []
    chosen = set(range(0, steps + 1, every or max(1, -(-steps // SNAPSHOTS_PER_RUN)))) | {steps}
    if every is None:
        decades = math.log10(max(steps, 1))
        chosen |= {round(10 ** (i / SNAPSHOTS_PER_DECADE))
                   for i in range(int(SNAPSHOTS_PER_DECADE * decades) + 1)}
    return sorted(s for s in chosen if s <= steps)


def _snapshot(out, step, params, config):
    """Parameters only (no optimiser state), for tinymod progress."""
    checkpoint.save(out / runs.SNAPSHOTS / runs.checkpoint_name(step), params,
                    checkpoint.metadata(config.to_dict(), step))


def _sigint_handler(interrupted):
    """First Ctrl-C: finish the step, save and stop. Second: abort at once."""
    def handler(*_):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)
    return handler


def _stop_rule(config, rows):
    """Why training stops at the last evaluation: "stop_at" (test accuracy reached it),
    "stop_after_grok" (the step reached that multiple of the grok step, the first evaluation
    at GROK_ACC), or "steps" (neither: train on)."""
    last = rows[-1]
    if config.stop_at is not None and last["test_acc"] >= config.stop_at:
        return "stop_at"
    if config.stop_after_grok is not None:
        grok = next((r["step"] for r in rows if r["test_acc"] >= GROK_ACC), None)
        if grok is not None and last["step"] >= config.stop_after_grok * grok:
            return "stop_after_grok"
    return "steps"


def _loop(config, out, ds, host, state, bar):
    """Train from state.step to config.steps; returns (state, why it stopped)."""
    params, opt, step, seconds, rows = state
    snapshots = set(snapshot_steps(config.steps, config.snapshot_every))
    metrics = runs.MetricsLog(out / runs.METRICS, rows)        # kept from before a resume
    limits = blocks.threads_set(config.threads)   # how many blocks run at once; the result is the same
    interrupted = []
    previous = signal.signal(signal.SIGINT, _sigint_handler(interrupted)) if _main_thread() else None
    stopped = "steps"
    try:
        # overflow warnings are silenced: divergence is checked and reported below
        with limits, np.errstate(over="ignore", invalid="ignore"):
            if not rows:            # a fresh run at step 0, or a resume whose metrics were lost:
                rows.append(_evaluate(params, ds, config, step, seconds))   # labelled with its own step
                metrics.append(rows[-1])
                if step in snapshots:
                    _snapshot(out, step, params, config)
            t0 = time.perf_counter() - seconds
            if bar:
                bar.start(step, config.steps, rows[-1])
            if rows[-1]["step"] == step:       # resumed at the step where the run stopped
                stopped = _stop_rule(config, rows)
            step_times = []
            while step < config.steps and stopped == "steps":
                step += 1
                began = time.perf_counter()
                x, y = _batch(ds, (host.x_train, host.y_train), config, step)
                loss, grads = rnn.loss_and_grads(params, x, y, config.activation, config.cell)
                if not math.isfinite(loss):
                    _diverged(step, out)
                opt.step(params, grads)
                step_times.append(time.perf_counter() - began)
                if step in snapshots:
                    _snapshot(out, step, params, config)
                seconds = time.perf_counter() - t0
                if step % config.eval_every == 0 or step == config.steps:
                    rows.append(_evaluate(params, ds, config, step, seconds, step_times))
                    step_times = []
                    metrics.append(rows[-1])
                    if bar:
                        bar.update(step, rows[-1])
                    stopped = _stop_rule(config, rows)
                    if stopped != "steps":
                        break
                if step % config.checkpoint_every == 0:
                    _check_finite(params, step, out)
                    _save(out, step, params, config, opt, seconds)
                if interrupted:
                    raise Interrupted(step, _save(out, step, params, config, opt, seconds))
    finally:
        metrics.close()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if bar:
            bar.close()
    return State(params, opt, step, seconds, rows), stopped


def _finish(config, out, state, stopped):
    """The last checkpoint and snapshot, model.npz, the figures; the summary."""
    params, opt, step, seconds, rows = state
    _check_finite(params, step, out)
    newest, _ = runs.newest_checkpoint(out)
    if newest != out / runs.CHECKPOINTS / runs.checkpoint_name(step):
        _save(out, step, params, config, opt, seconds)
    if snapshot_steps(config.steps, config.snapshot_every) and \
            not (out / runs.SNAPSHOTS / runs.checkpoint_name(step)).exists():   # stopped early
        _snapshot(out, step, params, config)
    checkpoint.save(out / runs.MODEL, params, checkpoint.metadata(config.to_dict(), step, seconds=seconds))
    from tinymod.reports import plots          # matplotlib's import (0.45 s) waits until the end
    title = f"p = {config.p}, frac = {config.frac}, {config.activation or config.cell}, preset {config.preset}"
    plots.training_curves(rows, out / runs.CURVES_PNG, title)
    plots.weight_norm(rows, out / runs.WEIGHT_NORM_PNG, title)
    return summarize(rows, out, stopped)


def run(config, out, resume=False, overwrite=False, overrides=(), bar=None):
    """Train per `config` into the folder `out`; return the summary dict.

    Raises TinymodError for bad settings, folders or checkpoints, for a folder another
    training holds, and for divergence; Interrupted after saving a checkpoint when Ctrl-C
    is pressed, and KeyboardInterrupt at once when it is pressed again.
    """
    config, out = prepare_run(config, out, resume, overwrite, overrides)
    lock = runs.open_folder(out)
    try:
        if resume:
            _refuse_an_empty_resume(config, out)
        ds, host, state = _set_up(config, out, resume, overwrite)
        state, stopped = _loop(config, out, ds, host, state, bar)
        return _finish(config, out, state, stopped)
    finally:
        lock.release()


def _refuse_an_empty_resume(config, out):
    """A resume whose whole model is already at or past --steps would train nothing: it must
    change nothing either (no analysis removed, no setting rewritten). A missing or damaged
    model.npz is rebuilt from the newest checkpoint as usual."""
    try:
        done = checkpoint.load(out / runs.MODEL, expect=checkpoint.identity(config.to_dict()))[1]["step"]
    except TinymodError:
        return
    if done >= config.steps:
        raise TinymodError(f"nothing to train: {out / runs.MODEL} is at step {done} and --steps is "
                           f"{config.steps}; nothing was changed (pass a larger --steps to train on)")


def _diverged(step, out):
    last, _ = runs.newest_checkpoint(out)
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
