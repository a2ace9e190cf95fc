"""Every notebook is committed clean (tests/test_docs.py runs them top to bottom,
in the documentation build, and checks what they print)."""

import re
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPOSITORY = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
GITHUB = REPOSITORY.removeprefix("https://github.com/")
COLAB = f"https://colab.research.google.com/github/{GITHUB}/blob/main/notebooks/02_colab_tpu.ipynb"


def test_there_are_two_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_intro_to_deep_learning.ipynb", "02_colab_tpu.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: clear the outputs"
            )
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


def test_colab_badge_and_tpu_runtime():
    readme = (ROOT / "README.md").read_text()
    assert f"]({COLAB})" in readme
    nb = nbformat.read(ROOT / "notebooks" / "02_colab_tpu.ipynb", as_version=4)
    assert COLAB in nb.cells[0].source and nb.metadata["accelerator"] == "TPU"
    install = nb.cells[1].source
    assert "--no-deps" in install and f"git+{REPOSITORY}" in install


def test_every_repository_address_is_the_one_in_pyproject():
    texts = [ROOT / "README.md", *NOTEBOOKS, *(ROOT / "docs" / "guides").glob("*.md")]
    for path in texts:
        for found in re.findall(r"github\.com/([\w.-]+/[\w.-]+)", path.read_text()):
            assert found == GITHUB, (
                f"{path.name} names github.com/{found}, pyproject says {REPOSITORY}"
            )
