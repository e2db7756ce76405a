"""Every lecture runs, and prints exactly what it says it prints (pinned kernels: see
run_lectures). The lectures share a folder, so a model several lectures study is trained
once (tinymod.course.trained). They run with one BLAS thread count: that training and a
lecture-sized analysis give the same bits for any count is test_blocks' to prove."""
import re

import pytest

from run_lectures import LECTURES, lectures, run


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("lectures")


@pytest.mark.parametrize("path", lectures(), ids=lambda p: p.stem)
def test_lecture(path, workdir):
    failed, attempted, output = run(path, workdir)
    assert attempted > 10, "a lecture without code"
    assert failed == 0, f"{failed} of {attempted} examples differ:\n{output}"


def test_all_twelve_lectures_exist():
    assert [p.name[:2] for p in lectures()] == [f"{i:02d}" for i in range(1, 13)]


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
