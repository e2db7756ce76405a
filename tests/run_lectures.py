"""Execute the lectures (doctest-style markdown) in a folder: `make test` runs them in a
scratch folder, `make lectures` in lectures/ itself so their figures land in
lectures/figures. Usage: python tests/run_lectures.py [WORKDIR]."""
import doctest
import os
import sys
import time
from pathlib import Path

LECTURES = Path(__file__).resolve().parent.parent / "lectures"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def lectures():
    return sorted(LECTURES.glob("[0-9][0-9]_*.md"))


def run(path, workdir):
    """(failed, attempted) for one lecture, run with `workdir` as the current folder."""
    here = os.getcwd()
    os.chdir(workdir)
    try:
        return doctest.testfile(str(path), module_relative=False, optionflags=FLAGS,
                                globs={"__name__": "__lecture__"}, report=True)
    finally:
        os.chdir(here)


def main(argv):
    workdir = Path(argv[1]) if len(argv) > 1 else LECTURES
    failed = 0
    for path in lectures():
        start = time.perf_counter()
        result = run(path, workdir)
        failed += result.failed
        print(f"{path.name}: {result.attempted - result.failed}/{result.attempted} examples "
              f"passed in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
