"""The array namespace `xp`: NumPy by default, CuPy when the arrays live on a GPU.

Library code never imports numpy as its maths namespace directly; it asks
`namespace(*arrays)` for the module that owns its inputs, so one copy of the maths
serves both devices. Arrays become NumPy only at the edges (files, plots, printing)
through `to_numpy`. CuPy is never imported here unless an array already is one.
"""
import sys

import numpy


def namespace(*arrays):
    """The array module that owns `arrays` (numpy unless any is a CuPy array)."""
    if "cupy" in sys.modules:
        cupy = sys.modules["cupy"]
        if any(isinstance(a, cupy.ndarray) for a in arrays):
            return cupy
    return numpy


def is_numpy(xp):
    return xp is numpy


def to_numpy(a):
    """A NumPy copy of `a` (a no-op for NumPy arrays and Python scalars)."""
    if hasattr(a, "get") and not isinstance(a, numpy.ndarray):
        return a.get()
    return numpy.asarray(a)


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory instead of returning it to the OS.

    A training step allocates and frees the same few megabyte-sized temporaries
    every step; by default glibc hands each back to the OS and the next step pays a
    page fault per 4 KiB touching it again (about half of a full-batch step on the
    paper's setting, measured). Called by the training and benchmark entry points,
    never on import; a no-op where glibc is not the C library.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    limit = 32 << 20                      # glibc's largest allowed mmap threshold
    return bool(mallopt(M_MMAP_THRESHOLD, limit)) and bool(mallopt(M_TRIM_THRESHOLD, limit))
