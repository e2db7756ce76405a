"""`tinymod sweep`: grids of runs on dask.distributed, from a laptop to a cluster.

A grid file (TOML or JSON) holds settings fixed for every run at its top level, and under
`grid` the values to combine: a table of lists, or a list of such tables whose
combinations are joined (`[[grid]]` in TOML). Any `tinymod train` setting, and `preset`,
may appear in either place. Every combination is one ordinary run folder under the sweep
folder, named from the settings its grid table varies, and one dask task.

Tasks are idempotent: a finished run is skipped, a run that holds checkpoints resumes from
the newest one, so a task that dask reschedules after its worker died, or a sweep called
again, trains nothing twice. Each task runs with one thread; training is bit-identical
for any thread count (tinymod.blocks), so a sweep's model.npz is the one `tinymod train
--threads 1` writes.
"""
import csv
import io
import itertools
import math
import os
import statistics
import time
from pathlib import Path

from tinymod.training import runs
from tinymod.training.config import FIELDS, coerce, preset, read_table
from tinymod.errors import TinymodError

KEYS = set(FIELDS) | {"preset"}


# --- the grid --------------------------------------------------------------------------------

def read_grid(path):
    """[(settings, varied keys)], one per run, from a grid file; one-line errors."""
    table = read_table(path, "grid file")
    grids = table.pop("grid", {})
    if isinstance(grids, dict):
        grids = [grids]
    if not isinstance(grids, list) or not grids or not all(isinstance(g, dict) for g in grids):
        raise TinymodError(f"grid file {path}: `grid` must be a table of lists, or a list of such tables")
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise TinymodError(f"grid file {path} has unknown keys: {', '.join(unknown)}")
    combos = []
    for grid in grids:
        grid = {key.replace("-", "_"): value for key, value in grid.items()}
        unknown = sorted(set(grid) - KEYS)
        if unknown:
            raise TinymodError(f"grid file {path} has unknown keys in its grid: {', '.join(unknown)}")
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise TinymodError(f"grid file {path}: grid value {key} must be a non-empty list, got {values!r}")
        for values in itertools.product(*grid.values()):
            combos.append(({**table, **dict(zip(grid, values))}, list(grid)))
    return combos


def config_for(settings):
    """The TrainConfig of one combination (one thread, unless the grid says otherwise)."""
    rest = dict(settings)
    config = preset(rest.pop("preset", "default")).replace(**coerce({"threads": 1, **rest}))
    return config.validate()


def run_name(settings, varied):
    """A folder name from the settings a grid varies: `preset-default_seed-0`."""
    parts = [f"{key}-{settings[key]}" for key in varied] or ["run"]
    return "_".join(parts).replace("/", "-").replace(" ", "")


def plan(path):
    """[(name, settings, config)] for every combination, each validated before any runs."""
    seen, out = set(), []
    for settings, varied in read_grid(path):
        name = run_name(settings, varied)
        try:
            config = config_for(settings)
        except TinymodError as e:
            raise TinymodError(f"combination {name}: {e}") from None
        if name in seen:
            raise TinymodError(f"two combinations share the name {name}; vary a setting")
        seen.add(name)
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
        config = config_for(settings)
        entry["settings"] = config.to_dict()
        finished = (folder / runs.MODEL).is_file()
        if finished:
            rows = runs.read_metrics(folder / runs.METRICS, warn=False)
            summary = train.summarize(rows, folder)
        else:
            resume = (folder / runs.CONFIG).is_file()
            summary = train.run(config, folder, resume=resume)      # resumes the newest checkpoint
        entry.update(status="ok", skipped=finished, grok_step=summary["grok_step"], step=summary["step"],
                     train_acc=summary["train_acc"], test_acc=summary["test_acc"], test_loss=summary["test_loss"])
        if report:
            params, saved, _ = checkpoint.load(folder / runs.MODEL)
            if not (folder / runs.REPORT_MD).is_file() or not (folder / runs.FOURIER_JSON).is_file():
                run_report(params, saved, folder, summary)
            entry.update(_analysis(folder))
    except Exception as e:      # the run's own failure is a result; the sweep goes on
        entry.update(status="failed", error=f"{type(e).__name__}: {e}".splitlines()[0])
    return entry


def _analysis(folder):
    """The numbers of a run's report that the sweep compares across runs."""
    import json
    from tinymod.reports.claims import claims
    read = lambda name: json.loads((folder / name).read_text())
    fourier, svd, ablation = read(runs.FOURIER_JSON), read(runs.SVD_JSON)["matrices"], read(runs.ABLATION_JSON)
    used = fourier["key_sets"]["in_use"]
    fits = {f"{name}_{measure}": e[measure] for name, e in (fourier["fits"]["in_use"] or {}).items()
            for measure in ("fvu", "relative_l2")}
    return {"key_frequencies": fourier["key_frequencies"],
            "functional_key_frequencies": fourier["functional_key_frequencies"],
            "in_use_key_frequencies": fourier["in_use_key_frequencies"],
            "in_use_logit_energy_share": used["logit_energy_share"],
            "restricted_loss": used["restricted_loss"], "excluded_loss": used["excluded_loss"],
            "model_loss": fourier["model_loss"], "in_use_fits": fits,
            "share_well_explained_nanda": fourier["fits"]["share_well_explained_nanda"],
            "verdicts": {c.claim: c.verdict for c in claims(fourier, svd, ablation)}}


# --- the engine ---------------------------------------------------------------------------------

def _client(workers, scheduler):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise TinymodError("tinymod sweep needs dask.distributed: in a clone of tinymod, "
                           "pip install '.[sweep]'") from None
    if scheduler:
        try:
            return Client(scheduler, timeout="5s"), None
        except (OSError, TimeoutError) as e:
            raise TinymodError(f"cannot reach the dask scheduler at {scheduler}: {e}".splitlines()[0]) from None
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                           processes=True, dashboard_address=None)
    return Client(cluster), cluster


def run(grid_path, out, workers=None, scheduler=None, report=True, axes=None, echo=print):
    """Run every combination of the grid on dask; write sweep.json, sweep.csv and
    sweep_report.md into `out`; return the entries."""
    combos = plan(grid_path)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TinymodError(f"{out} is a file, not a sweep folder")
    if axes and any(a not in KEYS for a in axes):
        raise TinymodError(f"--axes must name settings, got {','.join(axes)}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TinymodError(f"cannot write to {out}: {e.strerror or e}") from None
    client, cluster = _client(workers, scheduler)
    start = time.perf_counter()
    entries, futures = {}, []
    try:
        from dask.distributed import as_completed
        futures = [client.submit(task, name, settings, str(out / name), report, key=f"tinymod-{name}",
                                 pure=False) for name, settings, _ in combos]
        failed = 0
        for done, future in enumerate(as_completed(futures), 1):
            try:
                entry = future.result()
            except Exception as e:                    # a task dask gave up on (KilledWorker)
                name = future.key.removeprefix("tinymod-")
                entry = {"name": name, "folder": name, "status": "failed",
                         "error": f"{type(e).__name__}: {e}".splitlines()[0]}
            entries[entry["name"]] = entry
            failed += entry["status"] != "ok"
            elapsed = time.perf_counter() - start
            left = elapsed / done * (len(futures) - done)
            echo(f"{done}/{len(futures)} runs done, {failed} failed, {elapsed:.0f} s, about {left:.0f} s left"
                 f" ({entry['name']}: {entry['status']}{', skipped' if entry.get('skipped') else ''})")
    except KeyboardInterrupt:
        client.cancel(futures)
        raise TinymodError("sweep cancelled; every file is whole, and calling it again "
                           "completes what is missing") from None
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    ordered = [entries[name] for name, _, _ in combos if name in entries]
    write_results(out, ordered, axes, time.perf_counter() - start)
    return ordered


# --- results ----------------------------------------------------------------------------------

def _flat(entry):
    row = {k: v for k, v in entry.items() if k not in ("settings", "verdicts", "in_use_fits")}
    row.update({f"in_use_fit_{k}": v for k, v in (entry.get("in_use_fits") or {}).items()})
    row.update({f"setting_{k}": v for k, v in (entry.get("settings") or {}).items()})
    row.update({f"verdict: {k}": v for k, v in (entry.get("verdicts") or {}).items()})
    return {k: (" ".join(map(str, v)) if isinstance(v, list) else v) for k, v in row.items()}


def write_results(out, entries, axes=None, seconds=None):
    runs.write_json(out / runs.SWEEP_JSON, {"seconds": seconds, "runs": entries})
    rows = [_flat(e) for e in entries]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    writer.writerows(rows)
    runs.write_text(out / runs.SWEEP_CSV, buffer.getvalue())
    figures = _figures(out, entries, axes)
    runs.write_text(out / runs.SWEEP_REPORT_MD, markdown(entries, figures, seconds))


def _group(entry):
    """Runs that differ only in their seed form a group."""
    settings = dict(entry.get("settings") or {})
    settings.pop("seed", None)
    return ", ".join(f"{k}={settings[k]}" for k in ("preset", "p", "frac", "lr", "weight_decay") if k in settings)


def _stats(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    if all(isinstance(v, int) for v in values) and max(values) >= 100:      # steps
        return f"{statistics.mean(values):,.0f} ± {sd:,.0f} ({min(values):,}–{max(values):,})"
    return f"{statistics.mean(values):.3g} ± {sd:.2g} ({min(values):.3g}–{max(values):.3g})"


def claims_table(entries):
    """Markdown: per group of seeds, each measure and each claim across its runs."""
    groups = {}
    for e in entries:
        groups.setdefault(_group(e), []).append(e)
    lines = []
    for group, members in groups.items():
        ok = [e for e in members if e["status"] == "ok"]
        grokked = [e["grok_step"] for e in ok if e.get("grok_step") is not None]
        lines += [f"### {group or 'all runs'}: {len(ok)} of {len(members)} runs finished, "
                  f"{len(grokked)} grokked", "",
                  "| measure | mean ± sd (range) over runs |", "| --- | --- |",
                  f"| grok step (test accuracy ≥ 99%) | {_stats(grokked)} |",
                  *[f"| {label} key frequencies (count) | {_stats([len(e[field]) for e in ok if field in e])} |"
                    for label, field in (("in-use", "in_use_key_frequencies"), ("functional", "functional_key_frequencies"),
                                         ("spectral", "key_frequencies"))],
                  f"| logit energy at the in-use set | {_stats([e.get('in_use_logit_energy_share') for e in ok])} |",
                  f"| restricted loss at the in-use set (all tuples) | {_stats([e.get('restricted_loss') for e in ok])} |",
                  f"| excluded loss at the in-use set (train tuples) | {_stats([e.get('excluded_loss') for e in ok])} |",
                  *[f"| {name} at the in-use set | {_stats([(e.get('in_use_fits') or {}).get(name) for e in ok])} |"
                    for name in dict.fromkeys(n for e in ok for n in (e.get("in_use_fits") or {}))],
                  f"| well-explained units, Nanda's single-frequency measure | "
                  f"{_stats([e.get('share_well_explained_nanda') for e in ok])} |", ""]
        claims = list(dict.fromkeys(c for e in ok for c in e.get("verdicts", {})))
        if claims:
            lines += ["| claim | verdicts over runs |", "| --- | --- |"]
            for c in claims:
                tally = {}
                for e in ok:
                    verdict = e["verdicts"].get(c, "not measured")
                    tally[verdict] = tally.get(verdict, 0) + 1
                lines.append(f"| {c} | " + "; ".join(f"{v} ({n} of {len(ok)})" for v, n in tally.items()) + " |")
            lines.append("")
    return lines


def markdown(entries, figures, seconds=None):
    failed = [e for e in entries if e["status"] != "ok"]
    lines = ["# tinymod sweep", "",
             f"{len(entries)} runs, {len(failed)} failed" + (f", {seconds:.0f} s" if seconds else "") + ".", "",
             "## The paper's claims over seeds", "", *claims_table(entries)]
    if failed:
        lines += ["## Failed runs", "", "| run | error |", "| --- | --- |",
                  *[f"| {e['name']} | {e.get('error', '')} |" for e in failed], ""]
    lines += [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def _figures(out, entries, axes):
    from tinymod.reports import plots
    made = []
    ok = [e for e in entries if e["status"] == "ok"]
    if ok:
        groups = {}
        for e in ok:
            groups.setdefault(_group(e), []).append(e.get("grok_step"))
        plots.grok_steps(groups, out / runs.GROK_STEPS_PNG)
        made.append(runs.GROK_STEPS_PNG)
    if axes and len(axes) == 2 and ok:
        cells = {}
        for e in ok:
            key = tuple(e["settings"].get(a) for a in axes)
            cells.setdefault(key, []).append(e.get("grok_step"))
        plots.phase_diagram(cells, axes, out / runs.PHASE_DIAGRAM_PNG)
        made.append(runs.PHASE_DIAGRAM_PNG)
    return made
