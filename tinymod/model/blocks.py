"""The same result for any thread count: per-example work in blocks of a fixed size, run
on a pool of threads with single-threaded BLAS, and reductions over blocks in block order.

A multi-threaded BLAS splits a matmul differently for each thread count, and even picks
other kernels, so the last bits of its results depend on how many threads ran it (we
measured every matmul of the step differ between 1 and 2 OpenBLAS threads). Here BLAS
runs one thread per call; the blocks are fixed by ROWS alone, so which thread computes a
block changes nothing, and block partial sums are added in block order. The thread count
only sets how many blocks run at once. The per-residue (p, H) matmuls run in the calling
thread. This applies to NumPy arrays; other backends keep their own scheduling.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np      # loads NumPy's BLAS before threadpoolctl looks for it

ROWS = 1024         # examples per block: part of the arithmetic, so a fixed number

_threads = None     # set by `threads_set`; None: as many as BLAS was set up to use
_blas_default = None
_pool = None
_pool_size = 0
_controller = None


@contextmanager
def threads_set(n):
    """Run blocks on n threads inside (None: the default). Results do not depend on it."""
    global _threads
    previous, _threads = _threads, n
    try:
        yield
    finally:
        _threads = previous


def threads():
    """Threads for the blocks: as set, else BLAS's own setting (OPENBLAS_NUM_THREADS, or
    one per core), read once before tinymod first limits BLAS."""
    _get_controller()
    return _threads or _blas_default or os.cpu_count() or 1


def blas_info():
    """What BLAS is in use (threadpoolctl's description), for config.json."""
    return [{k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for info in _get_controller().select(user_api="blas").info()]


def ranges(n):
    """The blocks of n examples: [(start, stop), ...], ROWS each, the last one shorter."""
    return [(lo, min(lo + ROWS, n)) for lo in range(0, n, ROWS)]


def _get_controller():
    global _controller, _blas_default
    if _controller is None:
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
        counts = [lib.num_threads for lib in _controller.select(user_api="blas").lib_controllers]
        _blas_default = max(counts) if counts else None
    return _controller


@contextmanager
def single_threaded_blas():
    """BLAS at one thread inside, restored after (a few microseconds, via threadpoolctl)."""
    with _get_controller().limit(limits=1, user_api="blas"):
        yield


def run(fn, n):
    """[fn(start, stop) for each block of n examples], in block order, on the pool."""
    return list(run_in_order(fn, n))


def run_in_order(fn, n):
    """fn(start, stop) for each block of n examples, on the pool, yielded in block order as
    they are consumed (a consumer that reduces as it goes keeps few results alive)."""
    global _pool, _pool_size
    blocks = ranges(n)
    workers = min(threads(), len(blocks))
    if workers <= 1:
        return (fn(lo, hi) for lo, hi in blocks)
    if _pool_size < workers:
        _pool, _pool_size = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tinymod-block"), workers
    return _pool.map(lambda block: fn(*block), blocks)


def add_in_order(parts):
    """Per-block tuples of partial results, added in block order as they come: the fixed
    arithmetic of every reduction over blocks. `parts` may be run_in_order's stream, so
    only the running total is kept (a block's arrays are its own, added into in place)."""
    parts = iter(parts)
    total = list(next(parts))
    for part in parts:
        for i, value in enumerate(part):
            if isinstance(total[i], np.ndarray):
                total[i] += value
            else:
                total[i] = total[i] + value
    return total


def matmul_rows(a, b, out=None):
    """a @ b for a (n, k) by blocks of rows: each output row is computed by one
    single-threaded matmul, whatever the thread count."""
    out = np.empty((a.shape[0], b.shape[1]), np.result_type(a, b)) if out is None else out

    def block(lo, hi):
        np.matmul(a[lo:hi], b, out=out[lo:hi])
    run(block, a.shape[0])
    return out


def matmul_sum(a_t, b):
    """a_t.T @ b for a_t (n, m) and b (n, k), a sum over the n examples: one partial
    product per block, added in block order as the blocks arrive (the same bits as
    add_in_order, without keeping every block's partial)."""
    total = None
    for part in run_in_order(lambda lo, hi: a_t[lo:hi].T @ b[lo:hi], a_t.shape[0]):
        if total is None:
            total = part
        else:
            total += part
    return total


def per_example(xp, a, b, out=None):
    """a @ b, a (B, k) one row per example: by fixed blocks on NumPy (matmul_rows), into
    `out` when given; other backends schedule themselves."""
    return matmul_rows(a, b, out) if xp is np else a @ b


def over_examples(xp, a, b):
    """a.T @ b, summed over the examples (B) of a and b: by fixed blocks on NumPy (matmul_sum)."""
    return matmul_sum(a, b) if xp is np else a.T @ b
