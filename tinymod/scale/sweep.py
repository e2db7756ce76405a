"""`tinymod sweep`: grids of runs on dask.distributed, from a laptop to a cluster.

A grid file (TOML or JSON) holds settings fixed for every run at its top level, and under
`grid` the values to combine: a table of lists, or a list of such tables whose
combinations are joined (`[[grid]]` in TOML). Any `tinymod train` setting, and `preset`,
may appear in either place. Every combination is one ordinary run folder under the sweep
folder, named from the settings its grid table varies, and one dask task.

Tasks are idempotent: a finished run is skipped, a run that holds checkpoints resumes from
the newest one, so a task that dask reschedules after its worker died, or a sweep called
again, trains nothing twice. Each task runs with one thread; training is bit-identical
for any thread count (tinymod.model.blocks), so a sweep's model.npz is the one `tinymod train
--threads 1` writes.
"""
import itertools
import json
import math
import os
import threading
import time
from pathlib import Path

from tinymod.analysis.records import ClaimRecord, FourierRecord
from tinymod.model.gated import gate_count
from tinymod.scale.cluster import WORKER_SECONDS, client_for, check_workers_see
from tinymod.scale.sweep_results import write_results
from tinymod.training import runs
from tinymod.training.config import FIELDS, build, coerce, read_table
from tinymod.errors import TinymodError

KEYS = set(FIELDS) | {"preset"}
MAX_RUNS = 5000          # combinations a grid may hold unless --max-runs says otherwise


# --- the grid --------------------------------------------------------------------------------

def read_grid(path, max_runs=MAX_RUNS):
    """[(settings, varied keys)], one per run, from a grid file; one-line errors. The number
    of combinations is checked against `max_runs` before any is built."""
    table = read_table(path, "grid file")
    grids = table.pop("grid", {})
    if isinstance(grids, dict):
        grids = [grids]
    if not isinstance(grids, list) or not grids or not all(isinstance(g, dict) for g in grids):
        raise TinymodError(f"grid file {path}: `grid` must be a table of lists, or a list of such tables")
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise TinymodError(f"grid file {path} has unknown keys: {', '.join(unknown)}")
    grids = [{key.replace("-", "_"): value for key, value in grid.items()} for grid in grids]
    for grid in grids:
        unknown = sorted(set(grid) - KEYS)
        if unknown:
            raise TinymodError(f"grid file {path} has unknown keys in its grid: {', '.join(unknown)}")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise TinymodError(f"grid file {path}: grid value {key} must be a non-empty list, "
                                   f"got {str(values)[:80]}")
    total = sum(math.prod(len(values) for values in grid.values()) for grid in grids)
    if total > max_runs:
        raise TinymodError(f"grid file {path} has {total:,} combinations, more than --max-runs {max_runs:,}")
    combos = []
    for grid in grids:
        for values in itertools.product(*grid.values()):
            combos.append(({**table, **dict(zip(grid, values))}, list(grid)))
    return combos


def config_for(settings):
    """The TrainConfig of one combination (one thread, unless the grid says otherwise)."""
    rest = dict(settings)
    config = build(rest.pop("preset", "default"), coerce({"threads": 1, **rest}))
    return config.validate()


def run_name(settings, varied):
    """A folder name from the settings a grid varies: `preset-default_seed-0`."""
    parts = [f"{key}-{settings[key]}" for key in varied] or ["run"]
    return "_".join(parts).replace("/", "-").replace(" ", "")


def plan(path, max_runs=MAX_RUNS):
    """[(name, settings, config)] for every combination, each validated before any runs. Two
    combinations that make the same run (a grid that spells out a default) are refused."""
    seen, same, out = set(), {}, []
    for settings, varied in read_grid(path, max_runs):
        name = run_name(settings, varied)
        try:
            config = config_for(settings)
        except (TinymodError, TypeError, ValueError) as e:      # a list or a table where a value goes
            raise TinymodError(f"combination {name[:80]}: {e}") from None
        if name in seen:
            raise TinymodError(f"two combinations share the name {name}; vary a setting")
        key = json.dumps(config.to_dict(), sort_keys=True)
        if key in same:
            raise TinymodError(f"combinations {same[key]} and {name} are the same run (the grid spells out "
                               f"a value the other already has); drop one")
        seen.add(name)
        same[key] = name
        out.append((name, settings, config))
    return out


# --- one task: train (or resume, or skip), then report ------------------------------------------

def task(name, settings, folder, report=True):
    """Run one combination in `folder` on a worker; a dict for sweep.json, never raising
    for a run's own failure (divergence, bad settings): those are recorded."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):            # one BLAS thread per task: a worker per core
        return _task(name, settings, Path(folder), report)


def _task(name, settings, folder, report):
    from tinymod.training import checkpoint, train
    from tinymod.reports.pipeline import run_report
    entry = {"name": name, "folder": folder.name, "settings": settings}
    try:
        if folder.is_symlink():                  # a run is written inside --out, never through a link
            raise runs.link_refused(folder)
        config = run_config(folder, config_for(settings))
        entry["settings"] = config.to_dict()          # what the run is (or was) trained with
        model = _whole_model(folder / runs.MODEL)
        finished = model is not None
        if finished:
            rows = runs.read_metrics(folder / runs.METRICS, warn=False)
            summary = train.summarize(rows, folder)
        else:
            resume = (folder / runs.CONFIG).is_file()
            summary = train.run(config, folder, resume=resume)      # resumes the newest checkpoint
        entry.update(status="ok", skipped=finished, grok_step=summary["grok_step"],
                     grok_seconds=summary["grok_seconds"], step=summary["step"],
                     train_acc=summary["train_acc"], test_acc=summary["test_acc"], test_loss=summary["test_loss"])
        if report:
            params, saved, _ = model or checkpoint.load(folder / runs.MODEL, expect=checkpoint.identity(config.to_dict()))
            if not _current_analyses(folder):
                run_report(params, saved, folder, summary)
            entry.update(_analysis(folder))
    except Exception as e:      # the run's own failure is a result; the sweep goes on
        entry.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
        if (folder / runs.CONFIG).is_file():   # a run the folder holds is described by its own settings
            try:
                entry["settings"] = train.read_run_config(folder).to_dict()
            except TinymodError:
                pass
    return entry


def run_config(folder, config):
    """`config`, or the config of the run `folder` already holds when they agree; a run
    trained with other settings is refused, as `train --resume` refuses it."""
    from tinymod.training.train import read_run_config
    if not (folder / runs.CONFIG).is_file():
        return config
    saved = read_run_config(folder)
    for name in FIELDS:
        if name != "threads" and getattr(saved, name) != getattr(config, name):
            raise TinymodError(f"{folder} holds a run with {name} = {getattr(saved, name)!r}, but the grid "
                               f"asks {getattr(config, name)!r}; sweep into another --out")
    return saved


def _current_analyses(folder):
    """report.md, claims.json and a fourier.json of this tinymod's format (an older one lacks
    key_sets or clock_pizza)."""
    try:
        return (folder / runs.REPORT_MD).is_file() and (folder / runs.CLAIMS_JSON).is_file() and \
            {"key_sets", "clock_pizza"} <= json.loads((folder / runs.FOURIER_JSON).read_text()).keys()
    except (OSError, ValueError):
        return False


def _whole_model(path):
    """model.npz loaded when it is there and whole; None, and the run is finished again from
    its newest checkpoint."""
    from tinymod.training import checkpoint
    try:
        return checkpoint.load(path, expect=checkpoint.run_identity(path)) if path.is_file() else None
    except TinymodError:
        return None


def _analysis(folder) -> dict:
    """The numbers of a run's report that the sweep compares across runs, read from its
    records (tinymod.analysis.records)."""
    read = lambda name: json.loads((folder / name).read_text())
    fourier: FourierRecord = read(runs.FOURIER_JSON)
    claims: list[ClaimRecord] = read(runs.CLAIMS_JSON)["claims"]
    svd = read(runs.SVD_JSON)["matrices"]
    used, cp = fourier["key_sets"]["in_use"], fourier["clock_pizza"]
    fits = {f"{name}_{measure}": e[measure] for name, e in (fourier["fits"]["in_use"] or {}).items()
            for measure in ("fvu", "relative_l2")}
    return {"key_frequencies": fourier["key_frequencies"],
            "functional_key_frequencies": fourier["functional_key_frequencies"],
            "in_use_key_frequencies": fourier["in_use_key_frequencies"],
            "in_use_logit_energy_share": used["logit_energy_share"],
            "restricted_loss": used["restricted_loss"], "excluded_loss": used["excluded_loss"],
            "model_loss": fourier["model_loss"], "in_use_fits": fits,
            "svd_energy": {name: e.get("energy_share_key_rank") for name, e in svd.items()},
            "svd_rank_90": {name: e["rank_90"] for name, e in svd.items()},
            "share_well_explained_nanda": fourier["fits"]["share_well_explained_nanda"],
            "clock_pizza": {"label": cp["sets"]["in_use"]["label"], "kappa": cp["sets"]["in_use"]["kappa"],
                            "pizza_excess": cp["sets"]["in_use"]["pizza_excess"],
                            "chance": cp["sets"]["in_use"]["chance"],
                            "distance_irrelevance": cp["distance_irrelevance"],
                            "gradient_symmetricity": cp["gradient_symmetricity"]},
            "claims": [{"id": c["id"], "claim": c["claim"], "status": c["status"], "verdict": c["verdict"],
                        "label": c["label"]} for c in claims]}


# --- the engine ---------------------------------------------------------------------------------

def run(grid_path, out, workers=None, scheduler=None, report=True, axes=None, echo=print,
        max_runs=MAX_RUNS, connect_timeout=WORKER_SECONDS):
    """Run every combination of the grid on dask; write sweep.json, sweep.csv and
    sweep_report.md into `out`; return the entries. `out` is created only once the cluster
    is reached, and locked for the sweep (two sweeps into one folder exclude each other)."""
    combos = plan(grid_path, max_runs)
    out = Path(out).absolute()        # before any task leaves: a worker elsewhere writes here too
    if out.exists() and not out.is_dir():
        raise TinymodError(f"{out} is a file, not a sweep folder")
    if axes and any(a not in KEYS for a in axes):
        raise TinymodError(f"--axes must name settings, got {','.join(axes)}")
    cores = os.cpu_count() or 1
    if workers is not None and workers > cores:
        raise TinymodError(f"--workers is at most the number of cores, {cores}; got {workers}")
    client, cluster = client_for(min(workers or cores, len(combos)), scheduler, connect_timeout)
    try:
        lock = _lock_folder(out)
        if scheduler:
            check_workers_see(client, out)
    except TinymodError:
        client.close()
        if cluster is not None:
            cluster.close()
        raise
    try:
        return _run_tasks(client, cluster, combos, out, report, axes, echo)
    finally:
        lock.release()


def _lock_folder(out):
    """Make the sweep folder (refusing links where its lock goes) and lock it for this sweep."""
    try:
        if out.is_dir():
            runs.refuse_links(out)
        out.mkdir(parents=True, exist_ok=True)
        from tinymod.training.lock import RunLock
        return RunLock(out, doing="swept").acquire()
    except OSError as e:
        raise TinymodError(f"cannot write to {out}: {e.strerror or e}") from None


def work(config, folder):
    """A run's rough cost, for the time estimate: steps x train examples x hidden width x
    gates (a finished run in `folder` costs nothing)."""
    if (folder / runs.MODEL).is_file():
        return 0
    examples = round(config.frac * config.p ** config.seq_len)
    return config.steps * examples * config.d_hidden * gate_count(config.cell)


def done_work(cost, entry):
    """The work a finished run did: its `work` scaled by the steps it trained (a run that
    stopped at a test accuracy did less than its steps allow)."""
    steps, step = entry.get("settings", {}).get("steps"), entry.get("step")
    return cost * min(step, steps) / steps if cost and steps and step is not None else cost


def estimate(elapsed, spent, remaining, done, total, early=0):
    """The time left, from the work done so far and the work of the runs not finished
    (`spent`, `remaining`), or by the count of runs while no finished run has cost anything.
    Runs that stop early (at a test accuracy or a multiple of the grok step) are counted at
    their full steps until they finish, so while `early` of them are left the estimate says
    it may be too long."""
    left = elapsed / spent * remaining if spent else elapsed / done * (total - done)
    return f"about {left:.0f} s left" + (f", less if the {early} run(s) that may stop early do"
                                          if early else "")


def _heartbeat(echo, start, state, every=60.0):
    """Say every `every` seconds that the sweep is alive, until state["stop"] is set."""
    while not state["stop"].wait(every):
        echo(f"{state['done']}/{state['total']} runs done, {time.perf_counter() - start:.0f} s, still running")


def _run_tasks(client, cluster, combos, out, report, axes, echo):
    start = time.perf_counter()
    entries, futures = {}, []
    costs = {name: work(config, out / name) for name, _, config in combos}
    state = {"stop": threading.Event(), "done": 0, "total": len(combos)}
    early = {name for name, _, config in combos
             if (config.stop_at is not None or config.stop_after_grok is not None) and costs[name]}
    echo(f"{len(combos)} runs ({sum(1 for c in costs.values() if c == 0)} already finished) on "
         f"{len(client.scheduler_info().get('workers', {})) or 'the'} worker(s); an estimate follows each finished run")
    threading.Thread(target=_heartbeat, args=(echo, start, state), daemon=True).start()
    try:
        from dask.distributed import as_completed
        futures = [client.submit(task, name, settings, str(out / name), report, key=f"tinymod-{name}",
                                 pure=False) for name, settings, _ in combos]
        failed, spent = 0, 0
        for done, future in enumerate(as_completed(futures), 1):
            try:
                entry = future.result()
            except Exception as e:                    # a task dask gave up on (KilledWorker)
                name = future.key.removeprefix("tinymod-")
                entry = {"name": name, "folder": name, "status": "failed",
                         "error": f"{type(e).__name__}: {e}".splitlines()[0]}
            entries[entry["name"]] = entry
            failed += entry["status"] != "ok"
            state["done"], spent = done, spent + done_work(costs.pop(entry["name"], 0), entry)
            elapsed = time.perf_counter() - start
            early.discard(entry["name"])
            echo(f"{done}/{len(futures)} runs done, {failed} failed, {elapsed:.0f} s, "
                 f"{estimate(elapsed, spent, sum(costs.values()), done, len(futures), len(early))}"
                 f" ({entry['name']}: {entry['status']}{', skipped' if entry.get('skipped') else ''})")
    except KeyboardInterrupt:
        client.cancel(futures)
        raise TinymodError("sweep cancelled; every file is whole, and calling it again "
                           "completes what is missing") from None
    finally:
        state["stop"].set()
        client.close()
        if cluster is not None:
            cluster.close()
    ordered = [entries[name] for name, _, _ in combos if name in entries]
    write_results(out, ordered, axes, time.perf_counter() - start)
    return ordered
