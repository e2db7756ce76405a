# tinymod's tasks. `make help` lists them. Everything runs in ./.venv, which the first
# target that needs it creates and fills from PyPI, pinned by constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tinymod-installed

.DEFAULT_GOAL := help
.PHONY: help install test test-long train sweep grokfast cells cells-default bench lectures gpu-check clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# A real (non-editable) install, so tests exercise tinymod as users get it, numba's cache
# included; it is redone whenever any file of the package (subfolders and package data
# included) or its pins change.
PACKAGE_FILES := $(shell find tinymod -type f ! -path '*/__pycache__/*' ! -name '*.pyc')
$(STAMP): $(BIN)/python setup.cfg pyproject.toml constraints.txt $(PACKAGE_FILES)
	rm -rf build    # setuptools' build folder keeps deleted modules, which would ship again
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt '.[test]'
	@touch $@

install: $(STAMP) ## create .venv and install tinymod with its test tools, pinned

# One worker per core; a test file runs whole on one worker (the lectures share a folder).
test: $(STAMP) ## run the whole test suite, lectures included
	$(BIN)/pytest -q -n auto --dist loadfile

test-long: $(STAMP) ## the wide hypothesis families `make test` samples (docs/tests.md)
	$(BIN)/pytest -q -n auto --dist loadfile -m long

train: $(STAMP) ## train the default preset into runs/default (replacing it), then write its report
	$(BIN)/tinymod train --out runs/default --overwrite
	$(BIN)/tinymod report runs/default

sweep: $(STAMP) ## the paper's claims over seeds (default x 5, paper --lr 3e-3 x 3) on a local dask cluster
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt '.[sweep]'
	$(BIN)/tinymod sweep tinymod/scale/grids/claims.toml --out runs/sweep

grokfast: $(STAMP) ## time to grok with and without Grokfast's filter, over seeds, on a local dask cluster (23 to 24 min here)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt '.[sweep]'
	$(BIN)/tinymod sweep tinymod/scale/grids/grokfast.toml --out runs/grokfast

cells: $(STAMP) ## vanilla RNN, GRU and LSTM side by side over seeds (quick, default, paper --lr 3e-3), on a local dask cluster
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt '.[sweep]'
	$(BIN)/tinymod sweep tinymod/scale/grids/cells.toml --out runs/cells

cells-default: $(STAMP) ## the default rows of make cells alone (rnn, GRU, LSTM x 3 seeds), on a local dask cluster
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt '.[sweep]'
	$(BIN)/tinymod sweep tinymod/scale/grids/cells_default.toml --out runs/cells-default

bench: $(STAMP) ## time a training step: ours vs PyTorch (installed if pip can), the matmul limit
	-$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt '.[bench]'
	$(BIN)/tinymod bench

lectures: $(STAMP) ## run every lecture in lectures/ and regenerate lectures/figures
	$(BIN)/python tests/run_lectures.py lectures

gpu-check: ## on a machine with an NVIDIA GPU and CuPy: backend tests, agreement, CPU vs GPU step times
	python3 tests/gpu_check.py

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
