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


def test_readme_states_the_bad_input_table_size():
    import importlib

    import bad_inputs

    for module in ("checkpoint", "data", "experiments", "losses", "metrics", "mlp", "sklearn", "sweep", "train"):
        importlib.import_module(f"test_{module}")  # each registers its own table
    cases = bad_inputs.CASES
    entries, kinds = sorted({e for e, _ in cases}), sorted({k for _, k in cases})
    claim = f"{len(cases)} cases ({len(entries)} entry points x {len(kinds)} kinds of bad input)"
    assert claim in README.read_text(), f"README should say: {claim}"
    rows = len(bad_inputs.option_rows("fit")) + len(bad_inputs.option_rows("fit_many"))
    assert f"{rows} option rows" in README.read_text(), f"README should say: {rows} option rows"
