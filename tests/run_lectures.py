"""Execute the lectures (doctest-style markdown) in a folder: `make test` runs them in a
scratch folder, `make lectures` in lectures/ itself so their figures land in
lectures/figures. Usage: python tests/run_lectures.py [WORKDIR] [LECTURE.md ...].

Each lecture runs in its own Python process with, on x86-64, OpenBLAS's Haswell kernels
(`PINNED_ENV`), which every AVX2 machine runs: a grokking run amplifies the last bit of a
matmul into a different grok step, and OpenBLAS picks its kernels by CPU. The thread count
needs no pin: training is bit-identical for any (tinymod.model.blocks) and an analysis equal to
1e-9, as tests/test_blocks.py proves with 1 and 2 threads. numba's kernels and NumPy's own
loops were checked to give the same bits with and without AVX-512.

Where those reference kernels do not exist (another CPU, ARM included), the lectures still
run: an example whose output depends on the BLAS kernels is marked `# doctest: +KERNELS`,
and its output is then not compared (every other line still is). The environment variable
named by `FORCE_FALLBACK` overrides the choice (1: fall back, 0: compare everything), which
tests/test_lectures.py uses to prove the fallback on other kernels."""
import doctest
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

LECTURES = Path(__file__).resolve().parent.parent / "lectures"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
KERNELS = doctest.register_optionflag("KERNELS")     # output depends on the BLAS kernels
FORCE_FALLBACK = "TINYMOD_LECTURES_FALLBACK"
PINNED_ENV = {}
if platform.machine().lower() in ("x86_64", "amd64"):
    PINNED_ENV["OPENBLAS_CORETYPE"] = "Haswell"


def env(threads=1):
    """The lecture's environment: pinned kernels and `threads` BLAS threads (training is
    bit-identical for any thread count: tinymod.model.blocks, tests/test_blocks.py)."""
    n = str(threads)
    return {**os.environ, **PINNED_ENV, "OPENBLAS_NUM_THREADS": n, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def lectures():
    return sorted(LECTURES.glob("[0-9][0-9]_*.md"))


class _Checker(doctest.OutputChecker):
    """doctest's comparison, except that on other kernels a +KERNELS example's output is
    accepted as it comes (the example still runs, and must not raise)."""

    def __init__(self, fallback):
        self.fallback = fallback

    def check_output(self, want, got, optionflags):
        return (self.fallback and bool(optionflags & KERNELS)) or super().check_output(want, got, optionflags)


def fallback():
    """True where the reference kernels are not the ones in use, unless FORCE_FALLBACK says."""
    forced = os.environ.get(FORCE_FALLBACK)
    if forced in ("0", "1"):
        return forced == "1"
    from tinymod.model import blocks
    from tinymod.training import machine
    return machine.describe_blas(blocks.blas_info()) != machine.REFERENCE_KERNELS


def _run_here(path, workdir):
    """doctest's TestResults for one lecture, run in this process with `workdir` as the
    current folder."""
    here = os.getcwd()
    os.chdir(workdir)
    try:
        test = doctest.DocTestParser().get_doctest(path.read_text(encoding="utf-8"), {"__name__": "__lecture__"},
                                                   path.name, str(path), 0)
        runner = doctest.DocTestRunner(checker=_Checker(fallback()), optionflags=FLAGS)
        runner.run(test)
        return runner.summarize()
    finally:
        os.chdir(here)


def run(path, workdir, threads=1, extra_env=None):
    """(failed, attempted, output) for one lecture, run in a fresh process (see `env`;
    `extra_env` goes over it)."""
    out = subprocess.run([sys.executable, __file__, "--one", str(path), str(workdir)],
                         env={**env(threads), **(extra_env or {})}, capture_output=True, text=True)
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode not in (0, 1) or not last.startswith("RESULT "):
        raise RuntimeError(f"{path.name} did not run:\n{out.stdout}\n{out.stderr}")
    failed, attempted = map(int, last.split()[1:])
    return failed, attempted, out.stdout + out.stderr


def main(argv):
    if argv[1:2] == ["--one"]:                      # the child: one lecture, pinned
        result = _run_here(Path(argv[2]), Path(argv[3]))
        print(f"RESULT {result.failed} {result.attempted}")
        return 1 if result.failed else 0
    workdir = Path(argv[1]) if len(argv) > 1 else LECTURES
    chosen = [Path(a).resolve() for a in argv[2:]] or lectures()
    failed = 0
    for path in chosen:
        start = time.perf_counter()
        bad, attempted, output = run(path, workdir)
        failed += bad
        if bad:
            print(output)
        print(f"{path.name}: {attempted - bad}/{attempted} examples passed in "
              f"{time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
