"""The machine a run trained on, as its config.json records it: the BLAS libraries and the
kernels they picked, which decide the last bits of every matmul (a run is bit-identical only
on the same kernels), and the kernels the README's and the lectures' numbers came from."""
from pathlib import Path

from tinymod.errors import TinymodError
from tinymod.training.checkpoint import saved_run_config

REFERENCE_KERNELS = "openblas Haswell"    # the kernels the README's and the lectures' numbers came from


def describe_blas(blas):
    """BLAS libraries as threadpoolctl describes them (config.json's `blas`), in a few words:
    "openblas Haswell"."""
    return ", ".join(f"{b['internal_api']} {b.get('architecture') or ''}".strip() for b in blas) or None


def blas_kernels(folder):
    """The BLAS kernels the run trained with, as its config.json records them ("openblas
    Haswell"), or None. `folder` is the run, or a checkpoint's analysis folder inside it
    (checkpoints/step_0001000/)."""
    try:
        saved = saved_run_config(folder, Path(folder).parent.parent)
        return describe_blas(saved.get("blas") or []) if saved else None
    except (AttributeError, KeyError, TypeError, TinymodError):     # a damaged record: no note
        return None
