"""The README's Python examples run as written (docs that no test runs rot)."""
import math
import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    # one full-batch step of the paper's model from its initialisation: loss near ln 113
    assert abs(namespace["loss"] - math.log(113)) < 1.0
    assert namespace["opt"].t == 1
