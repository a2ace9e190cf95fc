"""Sphinx configuration: myst-nb pages and notebooks, the book theme, and an API
reference: the names ``api.md`` lists by hand, a page each, generated from their
docstrings.

Build: ``sphinx-build -W -b html docs docs/_build/html``. The notebooks are executed at
build time with tiny settings (``JAXNN_NOTEBOOK_SMALL=1``, as CI runs them);
``JAXNN_NOTEBOOK_SMALL=0`` runs them at full size (minutes on a CPU).
"""

import os
import shutil
import tomllib
from pathlib import Path

HERE = Path(__file__).parent
os.environ.setdefault("JAXNN_NOTEBOOK_SMALL", "1")  # the kernels myst-nb starts inherit it
# autosummary writes a page per name api.md lists into generated/ (not committed): made
# anew each build, so a name taken off the list leaves no page behind
shutil.rmtree(HERE / "generated", ignore_errors=True)
# myst-nb reads notebooks from inside the source folder: copy them in (not committed)
(HERE / "notebooks").mkdir(exist_ok=True)
for nb in sorted((HERE.parent / "notebooks").glob("*.ipynb")):
    shutil.copyfile(nb, HERE / "notebooks" / nb.name)


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
with open(HERE.parent / "pyproject.toml", "rb") as f:
    REPOSITORY = tomllib.load(f)["project"]["urls"]["Repository"]
html_theme_options = {"repository_url": REPOSITORY, "use_repository_button": True}

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
