"""Shared test setup: one hypothesis profile (no deadline, so numba's first-call
compilation never fails a test, and a fixed number of examples so `make test` takes a
known time), and a tiny trained run for the analysis commands."""
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

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
