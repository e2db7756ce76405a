"""numba is optional at run time, and its on-disk cache works from the installed package.

Each case runs a fresh interpreter, from a folder outside the source tree, so it imports
tinymod the way a user's installed copy is imported.
"""
import json
import os
import subprocess
import sys

import pytest

from tinymod.model import kernels

PROBE = """
import json, numpy as np
from tinymod.model import kernels, rnn
params = rnn.init_params(5, 3, 4, dtype="float32")
x = np.array([[1, 2], [3, 4]])
loss, grads = rnn.loss_and_grads(params, x, x.sum(1) % 5)
hits = {}
for fn, dispatcher in kernels._compiled.items():
    hits[fn.__name__] = sum(dispatcher.stats.cache_hits.values())
print(json.dumps({"numba": kernels.numba_enabled(), "loss": loss, "hits": hits}))
"""


def run_probe(tmp_path, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "TINYMOD_"))}
    full_env.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=full_env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout), out.stderr


needs_numba = pytest.mark.skipif(not kernels.numba_enabled(), reason="numba is not importable")


@needs_numba
def test_second_process_loads_kernels_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first, _ = run_probe(tmp_path, NUMBA_CACHE_DIR=str(cache))
    second, _ = run_probe(tmp_path, NUMBA_CACHE_DIR=str(cache))
    assert first["numba"] and any(cache.rglob("*.nbi"))
    assert len(second["hits"]) == 5, second["hits"]         # every kernel T = 2 uses ...
    assert all(hits >= 1 for hits in second["hits"].values()), second["hits"]   # ... from disk
    assert second["loss"] == first["loss"]


@needs_numba
def test_no_writable_cache_folder_falls_back_quietly(tmp_path):
    """When numba can find no cache folder it can write (here: only the zip locator,
    which matches no file), kernels compile in memory without a word."""
    result, stderr = run_probe(tmp_path, NUMBA_CACHE_LOCATOR_CLASSES="ZipCacheLocator")
    assert result["numba"] and stderr == ""
    reference, _ = run_probe(tmp_path, TINYMOD_NUMBA="0")
    assert result["loss"] == pytest.approx(reference["loss"], rel=1e-5)


def test_numba_can_be_switched_off(tmp_path):
    result, stderr = run_probe(tmp_path, TINYMOD_NUMBA="0")
    assert result["numba"] is False and stderr == ""
    assert 0 < result["loss"] < 10
