"""Every lecture runs, and prints exactly what it says it prints, with 1 and with 2 BLAS
threads (pinned kernels: see run_lectures). The lectures of one thread count share a
folder, so a model several lectures study is trained once (tinymod.course.trained)."""
import pytest

from run_lectures import lectures, run


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    made = {}

    def workdir(threads):
        if threads not in made:
            made[threads] = tmp_path_factory.mktemp(f"lectures-{threads}-threads")
        return made[threads]
    return workdir


@pytest.mark.parametrize("path", lectures(), ids=lambda p: p.stem)
@pytest.mark.parametrize("threads", [1, 2])
def test_lecture(path, threads, workdirs):
    failed, attempted, output = run(path, workdirs(threads), threads)
    assert attempted > 10, "a lecture without code"
    assert failed == 0, f"{failed} of {attempted} examples differ:\n{output}"


def test_all_eleven_lectures_exist():
    assert [p.name[:2] for p in lectures()] == [f"{i:02d}" for i in range(1, 12)]
