"""Every lecture runs, and prints exactly what it says it prints, with 1 and with 2 BLAS
threads (pinned kernels: see run_lectures)."""
import pytest

from run_lectures import lectures, run


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("path", lectures(), ids=lambda p: p.stem)
def test_lecture(path, threads, tmp_path):
    failed, attempted, output = run(path, tmp_path, threads)
    assert attempted > 10, "a lecture without code"
    assert failed == 0, f"{failed} of {attempted} examples differ:\n{output}"


def test_all_eleven_lectures_exist():
    assert [p.name[:2] for p in lectures()] == [f"{i:02d}" for i in range(1, 12)]
