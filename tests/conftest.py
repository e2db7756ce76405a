"""Shared test setup: one hypothesis profile (no deadline, so numba's first-call
compilation never fails a test, and a fixed number of examples so `make test` takes a
known time), a tiny trained run for the analysis commands, and the helpers several test
files use (`from conftest import ...`): the tiny training flags, training through the CLI
or in a real process, waiting for its first checkpoint, and a folder's digest."""
import hashlib
import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

TINY = ["--p", "7", "--frac", "0.6", "--d-embed", "8", "--d-hidden", "8", "--lr", "0.01",
        "--eval-every", "5", "--checkpoint-every", "10"]


def invoke(*args):
    """`tinymod train` on the TINY model, through click's runner."""
    from tinymod.cli import main
    return CliRunner().invoke(main, ["train", *TINY, *map(str, args)])


def spawn_training(out, steps):
    """`tinymod train` on the TINY model in a real process (checkpoints every 50 steps)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tinymod", "train", *TINY, "--steps", str(steps),
                             "--checkpoint-every", "50", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out.parent)


def wait_for_checkpoint(out, proc, timeout=120):
    """Until the spawned training has written its first checkpoint (it must still run)."""
    deadline = time.monotonic() + timeout
    while not list((out / "checkpoints").glob("step_*.npz")) if (out / "checkpoints").exists() else True:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)


def digest(folder):
    """{relative path: sha256} of every file below `folder`: to show a command changed nothing."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}

settings.register_profile(
    "tinymod", deadline=None, max_examples=30, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("tinymod")


@pytest.fixture
def tiny_run(tmp_path):
    """A function training the quick preset at p = 11, H = 16 for `steps` into tmp_path/run."""
    from tinymod.cli import main

    def train(steps):
        run = tmp_path / "run"
        result = CliRunner().invoke(main, ["train", "--preset", "quick", "--p", "11", "--d-embed", "8",
                                           "--d-hidden", "16", "--steps", str(steps), "--out", str(run)])
        assert result.exit_code == 0, result.output
        return run
    return train
