"""The README's Python examples run as written (in order, in one namespace)."""

import re
from pathlib import Path

import matplotlib
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # a user sees it; fine
def test_readme_python_blocks_run(capsys):
    matplotlib.use("Agg")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    assert "Z1 = X · W1 (3, 4)" in capsys.readouterr().out
    assert namespace["r"].table[0]["val_loss"] <= namespace["r"].table[-1]["val_loss"]
