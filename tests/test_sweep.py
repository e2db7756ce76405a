"""tinymod sweep on a dask LocalCluster that the tests start themselves: results, skip and
resume, a failing run, bit-identity with `tinymod train --threads 1`, a worker killed
mid-sweep, and bad grid files."""
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("dask.distributed")

from tinymod import sweep  # noqa: E402
from tinymod.model import rnn
from tinymod.training import checkpoint
from tinymod.cli import main  # noqa: E402
from tinymod.errors import TinymodError  # noqa: E402

TINY = 'preset = "quick"\np = 11\nd_embed = 8\nd_hidden = 16\n'


def grid(tmp_path, text, name="grid.toml"):
    path = tmp_path / name
    path.write_text(TINY + text)
    return path


def params_of(folder):
    return checkpoint.load(folder / "model.npz")[0]


def same(a, b):
    return all(np.array_equal(a[k], b[k]) for k in rnn.PARAM_NAMES)


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def test_a_sweep_runs_skips_records_failures_and_matches_train(tmp_path, cluster):
    path = grid(tmp_path, "steps = 200\n[grid]\nseed = [0, 1]\nlr = [0.003, 1e9]\n")
    out = tmp_path / "out"
    entries = sweep.run(path, out, scheduler=cluster.scheduler_address, report=True, axes=["seed", "lr"],
                        echo=lambda line: None)
    status = {e["name"]: e["status"] for e in entries}
    assert status == {"seed-0_lr-0.003": "ok", "seed-0_lr-1000000000.0": "failed",
                      "seed-1_lr-0.003": "ok", "seed-1_lr-1000000000.0": "failed"}
    failed = next(e for e in entries if e["status"] == "failed")
    assert "diverged" in failed["error"]
    saved = json.loads((out / "sweep.json").read_text())["runs"]
    assert [r["name"] for r in saved] == [e["name"] for e in entries]
    ok = saved[0]
    assert {"folder", "settings", "grok_step", "train_acc", "test_acc", "key_frequencies",
            "functional_key_frequencies", "in_use_key_frequencies", "in_use_fits", "verdicts"} <= set(ok)
    assert ok["settings"]["seed"] == 0 and ok["folder"] == "seed-0_lr-0.003"
    assert (out / "sweep.csv").read_text().count("\n") == 5
    report = (out / "sweep_report.md").read_text()
    assert "claims over seeds" in report and "verdicts over runs" in report and "Failed runs" in report
    assert (out / "phase_diagram.png").is_file() and (out / "grok_steps.png").is_file()
    # bit-identical to tinymod train --threads 1
    result = CliRunner().invoke(main, ["train", "--preset", "quick", "--p", "11", "--d-embed", "8", "--d-hidden",
                                       "16", "--steps", "200", "--seed", "1", "--threads", "1",
                                       "--out", str(tmp_path / "alone")])
    assert result.exit_code == 0, result.output
    assert same(params_of(out / "seed-1_lr-0.003"), params_of(tmp_path / "alone"))
    # called again: nothing trains twice
    stamp = (out / "seed-0_lr-0.003" / "model.npz").stat().st_mtime_ns
    again = sweep.run(path, out, scheduler=cluster.scheduler_address, echo=lambda line: None)
    assert all(e["skipped"] for e in again if e["status"] == "ok")
    assert (out / "seed-0_lr-0.003" / "model.npz").stat().st_mtime_ns == stamp


def test_a_killed_worker_loses_nothing(tmp_path, cluster):
    text = "steps = 3000\ncheckpoint_every = 200\nsnapshot_every = 0\n[grid]\nseed = [0, 1, 2]\n"
    path = grid(tmp_path, text)
    reference = sweep.run(path, tmp_path / "ref", scheduler=cluster.scheduler_address, report=False,
                          echo=lambda line: None)
    assert all(e["status"] == "ok" for e in reference)
    out = tmp_path / "out"
    result = {}
    worker = threading.Thread(target=lambda: result.update(entries=sweep.run(
        path, out, scheduler=cluster.scheduler_address, report=False, echo=lambda line: None)))
    worker.start()
    deadline = time.monotonic() + 60
    while not list(out.glob("*/checkpoints/step_*.npz")):
        assert time.monotonic() < deadline and worker.is_alive()
        time.sleep(0.02)
    from dask.distributed import Client
    with Client(cluster.scheduler_address) as client:
        pids = list(client.run(os.getpid).values())
    os.kill(pids[0], signal.SIGKILL)                     # a lost node, mid-training
    worker.join(120)
    assert not worker.is_alive()
    assert all(e["status"] == "ok" for e in result["entries"]), result["entries"]
    for e in reference:
        assert same(params_of(tmp_path / "ref" / e["folder"]), params_of(out / e["folder"])), e["name"]


@pytest.mark.parametrize("text, message", [
    ('colour = "red"\n[grid]\nseed = [0]\n', "unknown keys: colour"),
    ('[grid]\nseed = []\n', "grid value seed must be a non-empty list"),
    ('[grid]\nseed = 3\n', "grid value seed must be a non-empty list"),
    ('[grid]\nflavour = [1]\n', "unknown keys in its grid: flavour"),
    ('[grid]\nfrac = [0.5, 1.5]\n', "combination frac-1.5: frac must lie strictly between 0 and 1"),
    ('[grid]\nseed = ["zero"]\n', "combination seed-zero: setting seed must be int"),
])
def test_bad_grid_files_are_one_line_errors(tmp_path, text, message):
    result = CliRunner().invoke(main, ["sweep", str(grid(tmp_path, text)), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["sweep", str(grid(tmp_path, "[grid]\nseed = [0]\n")), "--out",
                                       str(tmp_path / "out"), "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 1 and "cannot reach the dask scheduler" in result.output, result.output


def test_grids_of_tables_are_joined():
    from pathlib import Path
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "g.toml"
        path.write_text('steps = 10\n[[grid]]\npreset = ["default"]\nseed = [0, 1]\n'
                        '[[grid]]\npreset = ["paper"]\nlr = [0.003]\nseed = [0]\n')
        names = [name for name, _, _ in sweep.plan(path)]
    assert names == ["preset-default_seed-0", "preset-default_seed-1", "preset-paper_lr-0.003_seed-0"]
    with pytest.raises(TinymodError, match="must be a table of lists"):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "g.json"
            path.write_text('{"grid": 3}')
            sweep.plan(path)
