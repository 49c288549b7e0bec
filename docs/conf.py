"""Sphinx configuration of the skclust_ot documentation.

Build (warnings are errors, as in tests/test_docs.py)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Everything is local: no intersphinx inventories are downloaded and the theme
(alabaster) ships with Sphinx. The user guide's picture is a committed PNG
drawn by ``docs/make_figures.py``; the build does not run it.
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

import skclust_ot  # noqa: E402

# -- Project -----------------------------------------------------------------

project = "skclust_ot"
author = "skclust_ot developers"
copyright = "skclust_ot developers; BSD-3-Clause"
release = skclust_ot.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = []
root_doc = "index"
language = "en"
pygments_style = "sphinx"

# -- autodoc / numpydoc --------------------------------------------------------

autodoc_default_options = {"member-order": "bysource"}
# The estimator documents its methods through autodoc's :members: in api.rst;
# numpydoc's own member tables would list each method twice.
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
# Parameter types are free text ("torch.Tensor of shape (n, k)"); do not turn
# them into cross-references that cannot resolve without intersphinx.
numpydoc_xref_param_type = False
# Docstring validation of every documented object; with -W (the test suite's
# build) a violation fails the build. Left out: checks of taste rather than
# of content (summary on the first line, an extended summary, See Also and
# Examples sections on every object; RT02, because named return values,
# "labels : ndarray", are scikit-learn's convention).
numpydoc_validation_checks = {"all", "GL01", "ES01", "SA01", "EX01", "RT02"}
# Examples sections are shown as written, not rendered as plots.
numpydoc_use_plots = False

# -- HTML ---------------------------------------------------------------------

html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"skclust_ot {release}"
html_theme_options = {
    "description": "Clustering of imbalanced data by SP²OT optimal-transport pseudo-labels",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}
html_show_sourcelink = False


# -- Optional pages ------------------------------------------------------------

# docs/solver_benchmark.md is written by benchmarks/bench_solver.py and may be
# absent from a checkout; benchmarks.rst marks its place with this comment.
_SOLVER_PLACEHOLDER = ".. solver-benchmark-placeholder"


def _insert_solver_benchmark(app, docname, source):
    if docname != "benchmarks":
        return
    if (DOCS / "solver_benchmark.md").exists():
        text = (
            "The file ``docs/solver_benchmark.md``, as generated:\n\n"
            ".. literalinclude:: solver_benchmark.md\n"
            "   :language: markdown\n"
        )
    else:
        text = (
            "Not generated in this checkout: run "
            "``python benchmarks/bench_solver.py --out docs/solver_benchmark.md`` "
            "to write ``docs/solver_benchmark.md``, then rebuild the docs.\n"
        )
    source[0] = source[0].replace(_SOLVER_PLACEHOLDER, text)


# api.rst shows the current value of skclust_ot.VARIANTS (a plain dict, which
# autodoc would print on one unreadable line) in place of this comment.
_VARIANTS_PLACEHOLDER = ".. exec-variants-placeholder"


def _insert_variants(app, docname, source):
    if docname != "api":
        return
    lines = ["Current value (``inf`` is ``math.inf``)::", ""]
    for name, params in skclust_ot.VARIANTS.items():
        lines.append(f"       {name!r}: {params!r},")
    text = "\n   ".join(lines) + "\n"
    source[0] = source[0].replace(_VARIANTS_PLACEHOLDER, text)


def setup(app):
    app.connect("source-read", _insert_solver_benchmark)
    app.connect("source-read", _insert_variants)
    return {"parallel_read_safe": True}
