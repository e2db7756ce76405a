"""The tree shows the design: layered subpackages through which data flows one way, one
name per module (its path), small modules and functions, and each output file named in
one place (tinymod.training.runs)."""
import ast
import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tinymod
from tinymod.training import runs

PACKAGE = Path(tinymod.__file__).parent
ORDER = ("model", "training", "analysis", "reports", "scale")      # lower first
# the one upward import: training draws its curves through plots (which imports only
# matplotlib and, lazily, what a figure labels)
ALLOWED_UPWARD = {("training/train.py", "tinymod.reports.plots")}


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name):
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def imported(path, source=None):
    """The tinymod modules a file imports, in any spelling (absolute or relative `from`,
    `import a.b`, importlib.import_module or __import__ of a constant), as dotted module
    names: `from tinymod import reports` is tinymod.reports, `from tinymod.reports import
    plots` is tinymod.reports.plots."""
    here = _module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                if node.level else (node.module or "")
            if base.split(".")[0] == "tinymod":
                for alias in node.names:
                    names.append(f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names if alias.name.split(".")[0] == "tinymod"]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and node.args[0].value.startswith("tinymod") \
                and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                     or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module"))):
            names.append(node.args[0].value)
    return names


def upward_imports(path, source=None):
    layer = path.relative_to(PACKAGE).parts[0]
    if layer not in ORDER:
        return []
    found = []
    for name in imported(path, source):
        target = name.split(".")[1] if name.count(".") >= 1 else ""
        if (target in ORDER and ORDER.index(target) > ORDER.index(layer)) or target in ("cli", "course"):
            found.append((str(path.relative_to(PACKAGE)), name))
    return found


def test_data_flows_one_way_through_the_layers():
    upward = [edge for path in modules() for edge in upward_imports(path)]
    assert set(upward) <= ALLOWED_UPWARD, upward


@pytest.mark.parametrize("spelling", [
    "from tinymod import reports", "from tinymod.reports import pipeline", "import tinymod.reports.pipeline",
    "from ..reports import pipeline", "from .. import reports", "import tinymod.scale.sweep as s",
    "importlib.import_module('tinymod.reports.pipeline')", "__import__('tinymod.scale')",
    "def f():\n    from tinymod.reports.pipeline import report_path"])
def test_the_layer_rule_sees_every_spelling_of_an_upward_import(spelling):
    path = PACKAGE / "model" / "data.py"       # parsed with the line added, never written
    assert not upward_imports(path)
    assert upward_imports(path, path.read_text() + "\n" + spelling + "\n"), spelling


def test_a_module_has_one_name():
    """No import hook: a flat name is not a module, importing tinymod leaves sys.meta_path
    as it was, and reloading a module re-executes it."""
    code = ("import sys, importlib; before = list(sys.meta_path); import tinymod; "
            "from tinymod.model import rnn; assert sys.meta_path == before; "
            "rnn.forward = None; importlib.reload(rnn); assert callable(rnn.forward); "
            "assert rnn.__spec__.name == 'tinymod.model.rnn' and rnn.__spec__.origin.endswith('rnn.py')\n"
            "try:\n    import tinymod.rnn\nexcept ModuleNotFoundError:\n    print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    assert (PACKAGE / "py.typed").is_file()


def test_modules_and_functions_stay_small():
    for path in modules():
        source = path.read_text()
        assert source.count("\n") <= 400, path
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno - node.lineno < 60, f"{path}: {node.name}"


def test_each_output_file_is_named_in_runs_alone():
    names = {runs.CONFIG, runs.METRICS, runs.MODEL, runs.LOCK, runs.SWEEP_JSON, runs.SWEEP_CSV,
             runs.SWEEP_REPORT_MD, *runs.TRAINING_FIGURES, *runs.ANALYSIS_OUTPUTS}
    for path in modules():
        if path.name == "runs.py":
            continue
        literals = {node.value for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        assert not literals & names, f"{path}: {literals & names}"


def test_a_type_checker_resolves_every_import():
    """mypy on tinymod/ (setup.cfg's [mypy]): no import-not-found, no attr-defined, nothing."""
    source = Path(__file__).resolve().parents[1] / "tinymod"
    out = subprocess.run([sys.executable, "-m", "mypy", str(source)], cwd=source.parent,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_type_checker_catches_a_misspelt_record_field(tmp_path):
    """Contract 5's records are TypedDicts (tinymod.analysis.records): a reader that asks
    for a field the record does not have fails mypy, as a misspelt key would fail no test."""
    probe = tmp_path / "probe.py"
    probe.write_text("from tinymod.analysis.records import FourierRecord\n\n\n"
                     "def size(f: FourierRecord) -> int:\n"
                     "    return f['key_sets']['in_use']['sise']\n")
    source = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", str(probe)], cwd=source,
                         capture_output=True, text=True, env={**os.environ, "MYPYPATH": str(source)})
    assert out.returncode == 1 and '"sise"' in out.stdout, out.stdout + out.stderr
