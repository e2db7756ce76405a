"""Every lecture runs, and prints exactly what it says it prints (pinned kernels: see
run_lectures). The lectures share a folder, so a model several lectures study is trained
once (tinymod.course.trained). They run with one BLAS thread count: that training and a
lecture-sized analysis give the same bits for any count is test_blocks' to prove."""
import re

import pytest

from run_lectures import FORCE_FALLBACK, LECTURES, PINNED_ENV, lectures, run


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


def test_on_other_kernels_the_lectures_run_and_compare_all_but_the_marked_lines(tmp_path):
    """Forced onto OpenBLAS's Sandybridge kernels (no FMA: other last bits, so another grok
    step), lecture 1 fails when every line is compared, and passes in the fallback mode that
    other kernels get, where only its +KERNELS examples go uncompared (they still run)."""
    lecture = LECTURES / "01_grokking.md"
    assert "+KERNELS" in lecture.read_text()
    other = {"OPENBLAS_CORETYPE": "Sandybridge"} if PINNED_ENV else {}
    failed, attempted, output = run(lecture, tmp_path, extra_env={**other, FORCE_FALLBACK: "1"})
    assert failed == 0 and attempted > 10, output
    if other:              # x86-64: the marks are what make it pass (the runs above are reused)
        failed, _, _ = run(lecture, tmp_path, extra_env={**other, FORCE_FALLBACK: "0"})
        assert failed > 0
