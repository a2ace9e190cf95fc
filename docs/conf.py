"""Sphinx configuration: myst-nb pages and notebooks, the book theme, and an API
reference generated from the docstrings (a page per public function and class).

Build: ``sphinx-build -W -b html docs docs/_build/html``. The notebooks are executed at
build time; ``JAXNN_NOTEBOOK_SMALL=1`` (what CI sets) runs them with tiny settings.
"""

import shutil
from pathlib import Path

HERE = Path(__file__).parent
# myst-nb reads notebooks from inside the source folder: copy them in (not committed)
(HERE / "notebooks").mkdir(exist_ok=True)
for nb in sorted((HERE.parent / "notebooks").glob("*.ipynb")):
    shutil.copyfile(nb, HERE / "notebooks" / nb.name)


def _module_pages() -> None:
    """A page per public module of jaxnn (``api/``, not committed), each with an
    autosummary table that gives every function and class defined there its own page
    (``generated/``). Written here rather than by autosummary from module names,
    which would take ``jaxnn.doctor`` and ``jaxnn.explain`` for the functions that
    ``jaxnn/__init__.py`` re-exports under those names."""
    import importlib
    import inspect
    import pkgutil

    import jaxnn

    out = HERE / "api"
    out.mkdir(exist_ok=True)
    for info in pkgutil.iter_modules(jaxnn.__path__):
        if info.name.startswith("_"):
            continue
        name = f"jaxnn.{info.name}"
        module = importlib.import_module(name)
        defined = [
            n
            for n, obj in vars(module).items()
            if not n.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == name
        ]
        table = "".join(f"   {n}\n" for n in defined)
        text = f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n   :no-members:\n\n.. currentmodule:: {name}\n\n"
        if defined:
            text += f".. autosummary::\n   :toctree: ../generated\n\n{table}"
        (out / f"{name}.rst").write_text(text)


_module_pages()

project = "jaxnn"
author = "the jaxnn authors"
extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
html_theme = "sphinx_book_theme"
html_title = "jaxnn"
html_theme_options = {"repository_url": "https://github.com/jaxnn/jaxnn", "use_repository_button": True}

autosummary_generate = True
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    # scikit-learn adds these to every estimator; their docstrings point into its own docs
    "exclude-members": "set_fit_request,set_partial_fit_request,set_score_request,set_predict_request",
}
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields: a NamedTuple's fields are documented once
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "force"  # run every notebook at build time, so the pages show their plots
nb_execution_timeout = 900
nb_execution_raise_on_error = True
suppress_warnings = ["myst.header"]  # README sections start below the page's top heading
