"""The README and docs/: their Python examples run as written (docs that no test runs rot), the
front page stays short, and every link resolves."""
import math
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_docs_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", (README.parent / "docs" / "contracts.md").read_text(), flags=re.S)
    assert len(blocks) == 1
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    # one full-batch step of the paper's model from its initialisation: loss near ln 113
    assert abs(namespace["loss"] - math.log(113)) < 1.0
    assert namespace["opt"].t == 1


DOCS = README.parent / "docs"


def _slug(heading):
    """The anchor a code host gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_front_page_is_short_and_every_link_resolves():
    assert len(README.read_text().splitlines()) <= 200
    pages = [README, *sorted(DOCS.glob("*.md")), *sorted((README.parent / "lectures").glob("*.md"))]
    assert len(pages) > 10
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page.name}: {target} does not exist"
            if anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", file.read_text(), flags=re.M)
                assert anchor in {_slug(h) for h in headings}, f"{page.name}: no heading for #{anchor}"
