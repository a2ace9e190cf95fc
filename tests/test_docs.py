"""The documentation site builds with warnings as errors, gives every public name a
page, and shows the notebooks executed, with their plots."""

import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import jaxnn

ROOT = Path(__file__).resolve().parents[1]


def public_modules() -> list[str]:
    return sorted(f"jaxnn.{m.name}" for m in pkgutil.iter_modules(jaxnn.__path__) if not m.name.startswith("_"))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "JAXNN_NOTEBOOK_SMALL": "1"}
    env.pop("MPLBACKEND", None)  # the notebooks' kernels draw inline, so the pages get their plots
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs"), str(out)],
        capture_output=True, text=True, env=env, timeout=1200,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-5000:]
    return out


@pytest.mark.slow
def test_every_public_name_has_a_page(site):
    missing = []
    for name in public_modules():
        module = importlib.import_module(name)
        pages = [name] + [
            f"{name}.{n}"
            for n, obj in vars(module).items()
            if not n.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and getattr(obj, "__module__", None) == name
        ]
        missing += [] if (site / "api" / f"{name}.html").exists() else [name]
        missing += [p for p in pages[1:] if not (site / "generated" / f"{p}.html").exists()]
    for n in jaxnn.__dict__:  # the top-level names are documented where they are defined
        obj = getattr(jaxnn, n)
        if not n.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)):
            page = site / "generated" / f"{obj.__module__}.{obj.__qualname__}.html"
            missing += [] if page.exists() else [f"jaxnn.{n}"]
    assert not missing, missing
    fit_page = (site / "generated" / "jaxnn.train.fit.html").read_text()
    assert "log_dir" in fit_page and "&gt;&gt;&gt;" in (site / "generated" / "jaxnn.mlp.mlp.html").read_text()


@pytest.mark.slow
def test_notebooks_run_top_to_bottom_in_the_build(site):
    """The build runs every notebook (small settings; an error fails the build) once:
    what they print is checked here, in the executed copies myst-nb keeps."""
    executed = site.parent / "jupyter_execute" / "notebooks"

    def printed(stem):
        nb = nbformat.read(executed / f"{stem}.ipynb", as_version=4)
        return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)

    text = printed("01_intro_to_deep_learning")
    assert "by hand == model.apply: True" in text
    assert "non_finite_loss" in text or "non-finite" in text  # the NaN guard stopped lr=50
    assert re.search(r"largest difference between the chain rule and jax.grad: [0-9.e-]+", text)
    assert "training mode, two keys, same rows: equal? False" in text
    assert "inference mode, twice:              equal? True" in text
    assert "A1 = relu(batchnorm(Z1)) -> (4, 256)   then dropout 0.5 (training only)" in text
    text = printed("02_colab_tpu")
    assert "OK: jaxnn will train on" in text and "identical to an uninterrupted run: True" in text


@pytest.mark.slow
def test_notebook_pages_are_executed_with_their_plots(site):
    page = (site / "notebooks" / "01_intro_to_deep_learning.html").read_text()
    images = re.findall(r'<img [^>]*src="\.\./_images/([^"]+\.png)"', page)
    assert len(images) >= 5 and all((site / "_images" / i).exists() for i in images)
    assert "by hand == model.apply: True" in page
    assert "identical to an uninterrupted run: True" in (site / "notebooks" / "02_colab_tpu.html").read_text()
    for guide in ("training", "models", "checkpoints", "scaling", "colab_tpu", "sklearn"):
        assert "docs:" not in (site / "guides" / f"{guide}.html").read_text()  # the README markers stay hidden
