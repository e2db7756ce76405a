"""Every lecture runs, and prints exactly what it says it prints, with 1 and with 2 BLAS
threads (pinned kernels: see run_lectures). The lectures of one thread count share a
folder, so a model several lectures study is trained once (tinymod.course.trained)."""
import re

import pytest

from run_lectures import LECTURES, lectures, run


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


@pytest.mark.parametrize("path", lectures(), ids=lambda p: p.stem)
def test_each_lecture_has_three_exercises_with_hidden_solutions(path):
    text = path.read_text()
    assert "## Exercises" in text
    exercises = text[text.index("## Exercises"):]
    opened = exercises.count("<details><summary>Solution</summary>")
    assert opened >= 3 and exercises.count("</details>") == opened
    assert text[:text.index("## Exercises")].count("<details>") == 0


@pytest.mark.parametrize("path", lectures(), ids=lambda p: p.stem)
def test_every_figure_exists_and_has_a_caption_saying_what_to_see(path):
    paragraphs = [block.strip() for block in path.read_text().split("\n\n")]
    for i, block in enumerate(paragraphs):
        for name in re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", block):
            assert (LECTURES / name).is_file(), name
            following = paragraphs[i + 1] if i + 1 < len(paragraphs) else ""
            assert following.startswith("*What to see:*"), f"{name} has no caption"
