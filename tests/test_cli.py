"""The command line as a user meets it."""
import subprocess
import sys

from click.testing import CliRunner

from tinymod import __version__
from tinymod.cli import main


def test_help_and_version():
    runner = CliRunner()
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "modular addition" in result.output
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_python_dash_m_and_lazy_imports(tmp_path):
    """`python -m tinymod --help` works and imports neither numba nor matplotlib."""
    code = ("import sys, runpy; sys.argv = ['tinymod', '--help']\n"
            "try:\n    runpy.run_module('tinymod', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0\n"
            "print(sorted(m for m in ('numba', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    assert "Usage: tinymod" in out.stdout
    assert out.stdout.strip().endswith("[]")


def test_unknown_command_is_a_one_line_error():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2 and "No such command" in result.output
    assert "Traceback" not in result.output


def test_importing_tinymod_leaves_matplotlib_as_it_was(tmp_path):
    """The plots use matplotlib's object API: no pyplot, no backend switch for a notebook."""
    code = ("import matplotlib, sys\nbefore = matplotlib.get_backend()\n"
            "import tinymod.reports.plots, tinymod.reports.report, tinymod.training.train, tinymod.analysis.progress\n"
            "print(before == matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         check=True, env={**__import__("os").environ, "MPLBACKEND": "svg"})
    assert out.stdout.split() == ["True", "False"]


def test_train_says_when_the_kernels_are_not_the_readmes(tmp_path, monkeypatch):
    from tinymod.training import machine
    args = ["train", "--preset", "quick", "--p", "7", "--d-embed", "4", "--d-hidden", "4", "--steps", "5"]
    monkeypatch.setattr(machine, "blas_kernels", lambda folder: "openblas SkylakeX")
    result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "a")])
    assert result.exit_code == 0 and "note: this run used the BLAS kernels openblas SkylakeX" in result.output
    monkeypatch.setattr(machine, "blas_kernels", lambda folder: machine.REFERENCE_KERNELS)
    result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "b")])
    assert result.exit_code == 0 and "note:" not in result.output


def test_a_command_leaves_the_warnings_machinery_as_it_found_it(tmp_path):
    """The CLI prints a warning as one line while a command runs, and restores
    warnings.showwarning and formatwarning afterwards."""
    import warnings
    from tinymod.cli import main as cli
    before = (warnings.showwarning, warnings.formatwarning)
    run = tmp_path / "r"
    assert CliRunner().invoke(cli, ["train", "--preset", "quick", "--p", "7", "--d-embed", "4", "--d-hidden", "4",
                                    "--steps", "2", "--out", str(run)]).exit_code == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write("{not json\n")
    result = CliRunner().invoke(cli, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert any(line.startswith("Warning: ") and "metrics.jsonl" in line for line in result.output.splitlines())
    assert (warnings.showwarning, warnings.formatwarning) == before
