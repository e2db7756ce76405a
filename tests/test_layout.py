"""The tree shows the design: layered subpackages through which data flows one way, flat
names that still work, small modules and functions, and each output file named in one
place (tinymod.training.runs)."""
import ast
import importlib
from pathlib import Path

import pytest

import tinymod
from tinymod.training import runs

PACKAGE = Path(tinymod.__file__).parent
ORDER = ("model", "training", "analysis", "reports", "scale")      # lower first
# train draws its curves through plots, the figures every layer may use (they import only
# matplotlib and the run folder's atomic writer)
ALLOWED_UPWARD = {("training/train.py", "tinymod.reports.plots")}


def modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def imported(path):
    """The tinymod modules a file imports, as dotted names."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinymod"):
            names += [node.module] if node.module.count(".") >= 2 else \
                [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names if alias.name.startswith("tinymod")]
    return names


@pytest.mark.parametrize("layer, modules_", tinymod.LAYOUT.items())
def test_flat_names_are_the_layered_modules(layer, modules_):
    for name in modules_:
        layered = importlib.import_module(f"tinymod.{layer}.{name}")
        assert importlib.import_module(f"tinymod.{name}") is layered
        assert getattr(tinymod, name) is layered
        assert (PACKAGE / layer / f"{name}.py").is_file()


def test_a_renamed_module_still_imports_by_its_old_name():
    from tinymod import rank
    from tinymod.analysis import svd
    assert rank is svd and importlib.import_module("tinymod.rank") is svd


def test_data_flows_one_way_through_the_layers():
    upward = []
    for path in modules():
        layer = path.parent.name
        if layer not in ORDER:
            continue
        for name in imported(path):
            target = name.split(".")[1] if name.count(".") >= 1 else ""
            if target in ORDER and ORDER.index(target) > ORDER.index(layer):
                upward.append((str(path.relative_to(PACKAGE)), ".".join(name.split(".")[:3])))
    assert set(upward) <= ALLOWED_UPWARD, upward


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
