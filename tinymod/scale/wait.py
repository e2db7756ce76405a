"""The wait to grok as a user meets it: a real `tinymod train` process on the `default`
preset, with its own evaluation, snapshot and checkpoint intervals, timed from its start to
the evaluation that first shows 99% test accuracy, beside the steps' own time in that same
run (the grok step times the median of its rows' `step_ms`, each the median step of the 100
before it)."""
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tinymod.model.limits import GROK_ACC
from tinymod.training import runs

POLL_SECONDS = 0.02       # how often metrics.jsonl is read while the run trains


def _first_grok(metrics):
    """(step, the step_ms of every row up to it) at the first row at GROK_ACC in metrics.jsonl
    so far (read as `runs.read_metrics` reads it: a row being appended is skipped), or None."""
    times = []
    for row in runs.read_metrics(metrics, warn=False):
        if math.isfinite(row.get("step_ms", math.nan)):          # null before the first step
            times.append(row["step_ms"])
        if row["test_acc"] >= GROK_ACC:
            return row["step"], times
    return None


def time_to_grok(folder, seed=0):
    """{"grok_step", "wall_s" (process start to the first 99% row in metrics.jsonl, read
    every POLL_SECONDS), "median_step_ms" (of that run's rows), "steps_s" (grok step x it),
    "ratio"}, or {"error": the run's last error line}; the run is stopped there (--stop-at
    0.99) and finishes as usual."""
    metrics = Path(folder) / runs.METRICS
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tinymod", "train", "--seed", str(seed), "--stop-at",
                             str(GROK_ACC), "--out", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    found = wall = None
    while found is None:
        done = proc.poll() is not None
        found = _first_grok(metrics)
        wall = time.perf_counter() - start
        if done:
            break
        time.sleep(POLL_SECONDS)
    error = proc.communicate()[1].decode(errors="replace").strip()
    if proc.returncode != 0 or found is None or not found[1]:
        return {"error": (error.splitlines() or ["it never reached 99%"])[-1][:200]}
    step, times = found
    median_step_ms = statistics.median(times)
    steps_s = step * median_step_ms / 1e3
    return {"grok_step": step, "wall_s": wall, "steps_s": steps_s, "median_step_ms": median_step_ms,
            "ratio": wall / steps_s}
