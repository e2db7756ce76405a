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

from tinymod.scale import sweep  # noqa: E402
from tinymod.scale import cluster as sweep_cluster  # noqa: E402
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
            "functional_key_frequencies", "in_use_key_frequencies", "in_use_fits", "svd_energy", "claims"} <= set(ok)
    assert set(ok["svd_energy"]) >= {"E", "W_out", "E @ W_ih.T"}
    assert ok["settings"]["seed"] == 0 and ok["folder"] == "seed-0_lr-0.003"
    assert (out / "sweep.csv").read_text().count("\n") == 5
    report = (out / "sweep_report.md").read_text()
    assert "claims over seeds" in report and "Failed runs" in report
    assert "| claim (status over runs) | reproduced | partly | not | not measured |" in report
    assert {c["status"] for c in ok["claims"]} <= {"reproduced", "partly", "not"} and len(ok["claims"]) == 8
    assert "| top 2K singular energy of W_hh (K spectral) |" in report
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


def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_cluster, "CONNECT_SECONDS", 2)
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


# --- sweeps that never lie (hardening) ------------------------------------------------------------

def one_line(result, message):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and message in lines[-1], result.output
    assert "Traceback" not in result.output and lines[-1].startswith("Error: "), result.output


def test_changed_settings_are_refused_and_the_results_carry_the_trained_ones(tmp_path, cluster):
    out = tmp_path / "out"
    first = sweep.run(grid(tmp_path, "steps = 20\n[grid]\nseed = [0]\n"), out,
                      scheduler=cluster.scheduler_address, report=False, echo=lambda line: None)
    assert first[0]["status"] == "ok" and first[0]["settings"]["lr"] == 0.003
    again = sweep.run(grid(tmp_path, "steps = 40\nlr = 0.01\n[grid]\nseed = [0]\n", "g2.toml"), out,
                      scheduler=cluster.scheduler_address, report=False, echo=lambda line: None)
    assert again[0]["status"] == "failed" and "holds a run with lr = 0.003, but the grid asks 0.01" in again[0]["error"]
    saved = json.loads((out / "sweep.json").read_text())["runs"][0]
    trained = json.loads((out / "seed-0" / "config.json").read_text())
    assert saved["settings"]["lr"] == trained["lr"] == 0.003 and saved["settings"]["steps"] == 20


def test_a_truncated_model_is_rebuilt_from_its_checkpoint(tmp_path, cluster):
    out, path = tmp_path / "out", grid(tmp_path, "steps = 20\n[grid]\nseed = [0]\n")
    sweep.run(path, out, scheduler=cluster.scheduler_address, report=False, echo=lambda line: None)
    model = out / "seed-0" / "model.npz"
    whole = checkpoint.load(model)[0]
    model.write_bytes(model.read_bytes()[:100])
    again = sweep.run(path, out, scheduler=cluster.scheduler_address, report=False, echo=lambda line: None)
    assert again[0]["status"] == "ok" and not again[0]["skipped"]
    assert same(checkpoint.load(model)[0], whole)


def test_a_sweep_with_a_failed_run_exits_non_zero_with_the_count(tmp_path, cluster):
    path = grid(tmp_path, "steps = 20\n[grid]\nlr = [0.003, 1e32]\n")
    result = CliRunner().invoke(main, ["sweep", str(path), "--out", str(tmp_path / "out"), "--no-report",
                                       "--scheduler", cluster.scheduler_address])
    one_line(result, "1 of 2 runs failed")


def test_a_huge_grid_is_refused_before_any_combination_is_built(tmp_path):
    axes = "\n".join(f"{key} = [{', '.join(str(i) for i in range(1000))}]"
                     for key in ("seed", "steps", "eval_every", "checkpoint_every"))      # 10^12
    result = CliRunner().invoke(main, ["sweep", str(grid(tmp_path, "[grid]\n" + axes + "\n")),
                                       "--out", str(tmp_path / "out")])
    one_line(result, "1,000,000,000,000 combinations, more than --max-runs 5,000")
    assert not (tmp_path / "out").exists()


def test_more_workers_than_cores_are_refused(tmp_path):
    result = CliRunner().invoke(main, ["sweep", str(grid(tmp_path, "[grid]\nseed = [0]\n")), "--out",
                                       str(tmp_path / "out"), "--workers", str((os.cpu_count() or 1) + 1)])
    one_line(result, "--workers is at most the number of cores")


@pytest.mark.parametrize("address", ["garbage", "http://127.0.0.1:8786", "tls://127.0.0.1:8786",
                                     "ucx://127.0.0.1:8786", "inproc://x", "tcp://[::1", "tcp://host:99999"])
def test_scheduler_addresses_are_parsed_and_refused_in_one_line(tmp_path, address):
    result = CliRunner().invoke(main, ["sweep", str(grid(tmp_path, "[grid]\nseed = [0]\n")), "--out",
                                       str(tmp_path / "out"), "--scheduler", address])
    one_line(result, "--scheduler must be tcp://HOST:PORT")
    assert not (tmp_path / "out").exists()


def test_a_scheduler_that_never_speaks_times_out(tmp_path, monkeypatch):
    import socket
    monkeypatch.setattr(sweep_cluster, "CONNECT_SECONDS", 2)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    listener = threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True)
    listener.start()
    try:
        start = time.monotonic()
        result = CliRunner().invoke(main, ["sweep", str(grid(tmp_path, "[grid]\nseed = [0]\n")), "--out",
                                           str(tmp_path / "out"), "--scheduler",
                                           f"tcp://127.0.0.1:{server.getsockname()[1]}"])
        one_line(result, "cannot reach the dask scheduler")
        assert time.monotonic() - start < 30 and not (tmp_path / "out").exists()
    finally:
        server.close()


@pytest.mark.parametrize("text, message", [
    ('preset = ["quick"]\n[grid]\nseed = [0]\n', "unknown preset"),
    ('[grid]\npreset = [{a = 1}]\n', "unknown preset"),
])
def test_a_preset_given_as_a_list_or_table_is_one_line(tmp_path, text, message):
    path = tmp_path / "g.toml"
    path.write_text(text)
    one_line(CliRunner().invoke(main, ["sweep", str(path), "--out", str(tmp_path / "out")]), message)


@pytest.mark.parametrize("content, message", [(b'{"grid": {"seed": [0]}, "x": "\xff\xfe"}', "is not UTF-8 text"),
                                              (b"[" * 100000 + b"]" * 100000, "nests too deeply")])
def test_non_utf8_or_deeply_nested_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "g.json"
    path.write_bytes(content)
    one_line(CliRunner().invoke(main, ["sweep", str(path), "--out", str(tmp_path / "out")]), message)
    one_line(CliRunner().invoke(main, ["train", "--config", str(path), "--out", str(tmp_path / "r")]), message)


def test_two_sweeps_into_one_folder_exclude_each_other(tmp_path, cluster):
    out = tmp_path / "out"
    out.mkdir()
    from tinymod.training.lock import RunLock
    with RunLock(out, doing="swept"):
        result = CliRunner().invoke(main, ["sweep", str(grid(tmp_path, "[grid]\nseed = [0]\n")), "--out",
                                           str(out), "--scheduler", cluster.scheduler_address])
    one_line(result, "is in use by process")
    assert "cannot be swept now" in result.output


def test_the_time_estimate_weighs_runs_by_their_work(tmp_path):
    from tinymod.training.config import build
    rnn_work = sweep.work(build("quick", {}), tmp_path)
    assert sweep.work(build("quick", {"cell": "gru"}), tmp_path) == 3 * rnn_work
    assert sweep.work(build("quick", {"steps": 12000}), tmp_path) == 2 * rnn_work
    (tmp_path / "model.npz").write_bytes(b"")
    assert sweep.work(build("quick", {}), tmp_path) == 0          # finished: nothing left to do


def test_the_estimate_says_when_runs_that_stop_early_may_make_it_long():
    assert sweep.estimate(10.0, 100, 300, 1, 4) == "about 30 s left"
    assert sweep.estimate(10.0, 0, 0, 2, 6) == "about 20 s left"        # nothing costed yet: by count
    assert sweep.estimate(10.0, 100, 300, 1, 4, early=2) == \
        "about 30 s left, less if the 2 run(s) that may stop early do"
    stopped = {"settings": {"steps": 20000}, "step": 5000}
    assert sweep.done_work(400, stopped) == 100                      # a quarter of its steps
    assert sweep.done_work(400, {"settings": {"steps": 20000}, "step": 20000}) == 400
    assert sweep.done_work(0, stopped) == 0                          # finished before the sweep
    assert sweep.done_work(400, {"status": "failed"}) == 400         # no step recorded


def test_the_sweep_tallies_claim_statuses_not_their_text():
    """Three runs whose verdict texts differ ('not: 7 of 12', 'not: 9 of 12') but whose
    statuses are records: one row, counted by status."""
    from tinymod.scale.sweep_results import claims_table
    record = lambda status, verdict: {"id": "aligned", "claim": "top singular vectors are key Fourier modes",
                                      "status": status, "verdict": verdict, "label": None}
    entries = [{"name": f"seed-{i}", "status": "ok", "settings": {"seed": i}, "grok_step": 100,
                "claims": [record(s, v)]}
               for i, (s, v) in enumerate([("not", "not: 7 of 12"), ("not", "not: 9 of 12"),
                                           ("reproduced", "reproduced")])]
    rows = [line for line in claims_table(entries) if line.startswith("| top singular vectors")]
    assert rows == ["| top singular vectors are key Fourier modes | 1 of 3 | 0 of 3 | 2 of 3 | 0 of 3 |"]


def test_a_claim_status_is_one_of_three():
    from tinymod.reports.claims import Claim
    with pytest.raises(ValueError, match="status 'partly: 2 of 6'"):
        Claim("low_rank", "c", "p", "o", "partly: 2 of 6", "partly: 2 of 6", "crit", "why")


def test_a_run_folder_that_is_a_link_is_refused_and_nothing_is_written_through_it(tmp_path, cluster):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "seed-0").symlink_to(elsewhere)
    entries = sweep.run(grid(tmp_path, "steps = 5\n[grid]\nseed = [0]\n"), out, scheduler=cluster.scheduler_address,
                        report=False, echo=lambda line: None)
    assert entries[0]["status"] == "failed" and "symbolic link" in entries[0]["error"]
    assert not list(elsewhere.iterdir())


def test_a_scheduler_without_a_worker_is_one_line_after_the_connect_timeout(tmp_path):
    from dask.distributed import LocalCluster
    with LocalCluster(n_workers=0, dashboard_address=None) as empty:
        result = CliRunner().invoke(main, ["sweep", str(grid(tmp_path, "[grid]\nseed = [0]\n")), "--out",
                                           str(tmp_path / "out"), "--scheduler", empty.scheduler_address,
                                           "--connect-timeout", "1"])
    one_line(result, "no worker joined the scheduler")
    assert not (tmp_path / "out").exists()


def test_a_relative_out_is_made_absolute_before_any_task_leaves(tmp_path, cluster, monkeypatch):
    monkeypatch.chdir(tmp_path)
    entries = sweep.run(grid(tmp_path, "steps = 5\n[grid]\nseed = [0]\n"), "rel", scheduler=cluster.scheduler_address,
                        report=False, echo=lambda line: None)
    assert entries[0]["status"] == "ok" and (tmp_path / "rel" / "seed-0" / "model.npz").is_file()


def test_each_worker_must_see_the_clients_folder_before_any_run_is_sent(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / ".probe-x").write_text("")
    assert sweep_cluster.probe(str(tmp_path / "shared"), ".probe-x") is None
    assert "does not see" in sweep_cluster.probe(str(tmp_path / "shared"), ".probe-y")      # another machine's folder

    class Workers:                           # one worker that sees it, one that does not
        def run(self, fn, folder, marker):
            self.sent = marker
            return {"tcp://a:1": fn(folder, marker), "tcp://b:2": fn(folder + "-elsewhere", marker)}
    workers = Workers()
    with pytest.raises(TinymodError, match="the worker at tcp://b:2 does not see .* give --out a folder every "
                                           "worker shares"):
        sweep_cluster.check_workers_see(workers, tmp_path / "shared")
    assert workers.sent.startswith(".probe-") and sorted(os.listdir(tmp_path / "shared")) == [".probe-x"]


def test_a_scheduler_that_answers_the_handshake_with_nonsense_is_one_line(tmp_path):
    import socket
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def nonsense():
        conn, _ = server.accept()
        conn.sendall(b"\xff" * 64)           # a frame count and lengths of exabytes
        time.sleep(5)
    threading.Thread(target=nonsense, daemon=True).start()
    try:
        result = CliRunner().invoke(main, ["sweep", str(grid(tmp_path, "[grid]\nseed = [0]\n")), "--out",
                                           str(tmp_path / "out"), "--scheduler",
                                           f"tcp://127.0.0.1:{server.getsockname()[1]}"])
        one_line(result, "cannot reach the dask scheduler")
        assert not (tmp_path / "out").exists()
    finally:
        server.close()
