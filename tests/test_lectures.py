"""Every lecture runs, and prints exactly what it says it prints."""
import pytest

from run_lectures import lectures, run


@pytest.mark.parametrize("path", lectures(), ids=lambda p: p.stem)
def test_lecture(path, tmp_path):
    result = run(path, tmp_path)
    assert result.attempted > 10, "a lecture without code"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples differ (see output)"


def test_all_nine_lectures_exist():
    assert [p.name[:2] for p in lectures()] == [f"{i:02d}" for i in range(1, 10)]
