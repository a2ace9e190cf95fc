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
from helpers import made_once

import jaxnn

ROOT = Path(__file__).resolve().parents[1]


API = ROOT / "docs" / "api.md"


def documented() -> list[str]:
    """The names ``docs/api.md`` lists, in order."""
    return re.findall(r"^   (jaxnn\.[\w.]+)$", API.read_text(), re.M)


def resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _public_modules() -> list:
    """jaxnn and every module or package under it whose dotted name has no ``_`` part."""
    found = [jaxnn]
    for info in pkgutil.walk_packages(jaxnn.__path__, "jaxnn."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            found.append(importlib.import_module(info.name))
    return found


def test_the_public_surface_is_decided_in_code():
    """Equinox's rule: a function or class is public exactly when its name and every
    module part of its path have no leading underscore, and the API page lists every
    public one (a package's re-exports too) and nothing else."""
    names = documented()
    assert len(names) == len(set(names)), "a name is listed twice"
    listed = {}
    for name in names:
        obj = resolve(name)
        assert (inspect.getdoc(obj) or "").strip(), f"{name} has no docstring"
        listed[id(obj)] = name
        if inspect.isfunction(obj) or inspect.isclass(obj):
            home = obj.__module__.split(".")
            assert not any(p.startswith("_") for p in home[1:]) or name.rsplit(".", 1)[0] in (
                m.__name__ for m in _public_modules()
            ), f"{name} is listed but lives in the private {obj.__module__}"
    unlisted = []
    for module in _public_modules():
        package = module.__name__ == "jaxnn" or hasattr(module, "__path__")
        for attr, obj in vars(module).items():
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            defined_here = obj.__module__ == module.__name__
            reexported = package and obj.__module__.startswith("jaxnn")
            if (defined_here or reexported) and id(obj) not in listed:
                unlisted.append(f"{module.__name__}.{attr}")
    assert not unlisted, (
        f"public but not in docs/api.md (list them, or give them a _ name): {unlisted}"
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    def build(out):
        env = {**os.environ, "JAXNN_NOTEBOOK_SMALL": "1"}
        env.pop(
            "MPLBACKEND", None
        )  # the notebooks' kernels draw inline, so the pages get their plots
        done = subprocess.run(
            [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(ROOT / "docs"), str(out)],
            capture_output=True, text=True, env=env, timeout=1200,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-5000:]

    return made_once(tmp_path_factory, "site", build)


@pytest.mark.slow
def test_every_listed_name_has_a_page(site):
    missing = [n for n in documented() if not (site / "generated" / f"{n}.html").exists()]
    assert not missing, missing
    fit_page = (site / "generated" / "jaxnn.train.fit.html").read_text()
    assert (
        "log_dir" in fit_page
        and "&gt;&gt;&gt;" in (site / "generated" / "jaxnn.mlp.mlp.html").read_text()
    )


@pytest.mark.slow
def test_notebooks_run_top_to_bottom_in_the_build(site):
    """The build runs every notebook (small settings; an error fails the build) once:
    what they print is checked here, in the executed copies myst-nb keeps."""
    executed = site.parent / "jupyter_execute" / "notebooks"

    def printed(stem):
        nb = nbformat.read(executed / f"{stem}.ipynb", as_version=4)
        return "\n".join(
            o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
        )

    text = printed("01_intro_to_deep_learning")
    assert "by hand == model.apply: True" in text
    assert "non_finite_loss" in text or "non-finite" in text  # the NaN guard stopped lr=50
    assert re.search(r"largest difference between the chain rule and jax.grad: [0-9.e-]+", text)
    assert "training mode, two keys, same rows: equal? False" in text
    assert "inference mode, twice:              equal? True" in text
    assert "A1 = relu(batchnorm(Z1)) -> (4, 256)   then dropout 0.5 (training only)" in text
    # where the text states a direction, the numbers printed take it
    kept = re.findall(r"lr=\S+ +(\w+) +epochs run=\d+ +val MSE of the params kept=(\S+)", text)
    assert {s for s, _ in kept} == {"completed", "non_finite_loss"}, kept
    assert all(float(v) == float("inf") for s, v in kept if s == "non_finite_loss")  # "overflow"
    plain = re.search(r"plain +test accuracy \S+, final training loss (\S+), test loss (\S+)", text)
    assert float(plain[1]) < 0.7 * float(plain[2])  # "falls far below its test loss"
    text = printed("02_colab_tpu")
    assert "OK: jaxnn will train on" in text and "identical to an uninterrupted run: True" in text


@pytest.mark.slow
def test_notebook_pages_are_executed_with_their_plots(site):
    page = (site / "notebooks" / "01_intro_to_deep_learning.html").read_text()
    images = re.findall(r'<img [^>]*src="\.\./_images/([^"]+\.png)"', page)
    assert len(images) >= 5 and all((site / "_images" / i).exists() for i in images)
    assert "by hand == model.apply: True" in page
    assert (
        "identical to an uninterrupted run: True"
        in (site / "notebooks" / "02_colab_tpu.html").read_text()
    )
    for guide in (
        "training",
        "models",
        "checkpoints",
        "scaling",
        "data_on_disk",
        "colab_tpu",
        "sklearn",
        "contracts",
    ):
        assert (
            "docs:" not in (site / "guides" / f"{guide}.html").read_text()
        )  # the README markers stay hidden


def test_no_install_hint_names_another_projects_package():
    """ "jaxnn" on the package index is another project: every hint names jaxnn-mlp."""
    from jaxnn._checks import install_hint

    assert install_hint("examples") == "pip install 'jaxnn-mlp[examples]'"
    wrong = re.compile(r"pip install ['\"]?jaxnn\[")
    folders = ("jaxnn", "docs", "notebooks", "experiments", "benchmarks", "tests")
    files = [
        ROOT / "README.md",
        ROOT / "CONTRIBUTING.md",
        *(p for f in folders for p in (ROOT / f).rglob("*")),
    ]
    found = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in files
        if p.suffix in (".py", ".md", ".ipynb")
        and "generated" not in p.parts
        and p.name != "test_docs.py"
        for m in wrong.finditer(p.read_text(errors="replace"))
    ]
    assert not found, found
