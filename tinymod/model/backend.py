"""The array namespace `xp`: NumPy by default, CuPy on a GPU, or any array-API library.

Library code never hard-codes numpy as its maths namespace: it asks `namespace(*arrays)`
for the module that owns its inputs, so one copy of the maths serves every device. The
shared path uses only the Python array API standard (functions, not methods; no in-place
fancy-index adds; `xp.astype`; devices passed explicitly), which the tests enforce by
running it on `array_api_strict` placed on a non-default device. Arrays become NumPy only
at the edges (files, plots, printing) through `to_numpy`. CuPy is imported only by
`get("cupy")`; numba kernels stay the NumPy fast path (tinymod.model.kernels).
"""
import sys

import numpy

from tinymod.errors import TinymodError

BACKENDS = ("numpy", "cupy")


def get(name):
    """The array module for a backend name; a clear error if CuPy or a GPU is missing."""
    if name == "numpy":
        return numpy
    if name != "cupy":
        raise TinymodError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device found")
    except Exception as e:  # ImportError, CUDA driver or runtime errors
        raise TinymodError(f"--backend cupy needs CuPy for your CUDA (in a clone of tinymod: "
                           f"pip install '.[gpu]'; or pip install cupy-cuda12x) and an NVIDIA GPU: "
                           f"{type(e).__name__}: {e}".splitlines()[0]) from None
    return cupy


def _owner(a):
    if isinstance(a, numpy.ndarray):
        return numpy
    if isinstance(a, numpy.generic):
        return None                       # a NumPy scalar mixes with any array, like a float
    if "cupy" in sys.modules and isinstance(a, sys.modules["cupy"].ndarray):
        return sys.modules["cupy"]
    if hasattr(a, "__array_namespace__"):
        return a.__array_namespace__()
    return None                           # a Python scalar, None: owned by nobody


def namespace(*arrays):
    """The array module that owns `arrays`: numpy, cupy, or the arrays' own namespace.
    Arrays of two namespaces (NumPy beside CuPy, say) are a bug, refused with TypeError,
    never silently converted."""
    owners = {_owner(a) for a in arrays} - {None}
    if len(owners) > 1:
        names = sorted(getattr(xp, "__name__", str(xp)) for xp in owners)
        raise TypeError(f"arrays of different namespaces mixed: {', '.join(names)}")
    return owners.pop() if owners else numpy


def _native(xp):
    return xp is numpy or xp.__name__ == "cupy"


def device(a):
    return getattr(a, "device", None)


def asarray(xp, value, dtype=None, like=None, copy=None):
    """`value` as an array of `xp`, on the device of `like` (for array-API libraries)."""
    if _native(xp):
        return xp.array(value, dtype=dtype, copy=True) if copy else xp.asarray(value, dtype=dtype)
    return xp.asarray(value, dtype=dtype, device=device(like) if like is not None else None, copy=copy)


def arange(xp, n, like):
    """0..n-1 on the device of `like`."""
    if _native(xp):
        return xp.arange(n)
    return xp.arange(n, device=device(like))


def to_numpy(a):
    """A NumPy copy of `a` (a no-op for NumPy arrays and Python scalars)."""
    if isinstance(a, numpy.ndarray) or numpy.isscalar(a):
        return numpy.asarray(a)
    xp = namespace(a)
    if xp.__name__ == "cupy":
        return a.get()
    if hasattr(a, "to_device") and hasattr(xp, "__array_namespace_info__"):
        a = a.to_device(xp.__array_namespace_info__().default_device())
    return numpy.asarray(a)
