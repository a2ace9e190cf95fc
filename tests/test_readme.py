"""The README and the docs guides: every Python block runs alone, pasted into a fresh
interpreter, and what they claim about the tests is true."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))


def blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


CODE = [(p, i) for p in [README, *GUIDES] for i in range(len(blocks(p)))]


@pytest.mark.slow
@pytest.mark.parametrize(("path", "i"), CODE, ids=[f"{p.stem}-{i}" for p, i in CODE])
def test_every_python_block_runs_alone_in_a_fresh_interpreter(path, i, tmp_path):
    env = {"MPLBACKEND": "Agg", "PATH": "", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", blocks(path)[i]], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_readme_is_a_front_page():
    text = README.read_text()
    assert len(text.splitlines()) <= 150 and len(text.split()) <= 1300
    assert "<!--" not in text and "Introduction to Deep Learning" in text
    commands = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert any("experiments/seed_network.py" in c for c in commands)
    assert any(
        c.strip().endswith("python -m pytest") for c in commands
    )  # .ci/run runs this command
    assert "python -m pytest" in (ROOT / ".ci" / "run").read_text()


def test_the_contracts_guide_states_the_bad_input_table_size():
    import importlib

    import bad_inputs

    for module in (
        "checkpoint",
        "data",
        "experiments",
        "losses",
        "metrics",
        "mlp",
        "sklearn",
        "sweep",
        "train",
    ):
        importlib.import_module(f"test_{module}")  # each registers its own table
    cases = bad_inputs.CASES
    entries, kinds = sorted({e for e, _ in cases}), sorted({k for _, k in cases})
    guide = (ROOT / "docs" / "guides" / "contracts.md").read_text()
    claim = f"{len(cases)} cases ({len(entries)} entry points x {len(kinds)} kinds of bad input)"
    assert claim in guide, f"the contracts guide should say: {claim}"
    rows = len(bad_inputs.option_rows("fit")) + len(bad_inputs.option_rows("fit_many"))
    assert f"{rows} option rows" in guide, f"the contracts guide should say: {rows} option rows"
