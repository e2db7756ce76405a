"""Every lecture runs, and prints exactly what it says it prints (with pinned arithmetic:
see run_lectures.PINNED_ENV)."""
import pytest

from run_lectures import lectures, run


@pytest.mark.parametrize("path", lectures(), ids=lambda p: p.stem)
def test_lecture(path, tmp_path):
    failed, attempted, output = run(path, tmp_path)
    assert attempted > 10, "a lecture without code"
    assert failed == 0, f"{failed} of {attempted} examples differ:\n{output}"


def test_all_nine_lectures_exist():
    assert [p.name[:2] for p in lectures()] == [f"{i:02d}" for i in range(1, 10)]
