"""The Sphinx documentation builds without a single warning.

Skipped unless the docs dependencies are installed (``pip install -e ".[docs]"``:
Sphinx, numpydoc, pydata-sphinx-theme, myst-parser, sphinx-gallery).
The build reads the docstrings, and numpydoc validates them, so a docstring
that breaks the reST or the numpydoc format fails it. The gallery's examples
are not executed here (``-D plot_gallery=0``: they train models for
minutes; ``tests/test_examples.py`` runs them in their fast mode), so the
build takes seconds.
"""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("numpydoc")
pytest.importorskip("myst_parser")
pytest.importorskip("sphinx_gallery")
pytest.importorskip("pydata_sphinx_theme")

ROOT = Path(__file__).resolve().parents[1]

# Modules whose public names (__all__) each get an API page.
DOCUMENTED_MODULES = [
    "skclust_ot.ot",
    "skclust_ot.exceptions",
    "skclust_ot.metrics",
    "skclust_ot.datasets",
    "skclust_ot.plotting",
    "skclust_ot.nn",
]


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    """The HTML folder of one quick build (examples not executed)."""
    tmp = tmp_path_factory.mktemp("docs")
    out = tmp / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
         "-D", "plot_gallery=0", "-d", str(tmp / "doctrees"), "docs", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return out


def test_docs_build_without_warnings(html):
    assert (html / "index.html").exists()
    api = (html / "api.html").read_text(encoding="utf-8")
    assert "SP2OTClustering" in api and "p2ot" in api
    estimator = (html / "generated" / "skclust_ot.SP2OTClustering.html").read_text(
        encoding="utf-8")
    for method in ("fit", "predict", "predict_proba", "transform"):
        assert f'id="skclust_ot.SP2OTClustering.{method}"' in estimator, method


def test_every_public_name_has_an_api_page(html):
    names = ["skclust_ot.SP2OTClustering", "skclust_ot.VARIANTS"]
    if hasattr(importlib.import_module("skclust_ot"), "show_versions"):
        names.append("skclust_ot.show_versions")
    for module_name in DOCUMENTED_MODULES:
        module = importlib.import_module(module_name)
        names += [f"{module_name}.{name}" for name in module.__all__
                  # re-exported from skclust_ot.exceptions, documented there
                  if not (module_name == "skclust_ot.ot" and name == "ConvergenceWarning")]
    missing = [name for name in names if not (html / "generated" / f"{name}.html").exists()]
    assert not missing, f"add these to docs/api.rst: {missing}"


def test_markdown_pages_render_as_html(html):
    """MyST renders the benchmark results' pipe tables as real tables."""
    page = (html / "quality_benchmark.html").read_text(encoding="utf-8")
    assert "<table" in page
    assert "|---|" not in page  # no Markdown source shown as text
    design = (html / "design.html").read_text(encoding="utf-8")
    assert "<h1>" in design and "## " not in design


def test_gallery_pages_exist(html):
    gallery = html / "auto_examples"
    assert (gallery / "index.html").exists()
    assert (gallery / "plot_quickstart_tabular.html").exists()
    # shown with its code, never executed (it needs torchrun)
    assert (gallery / "train_distributed.html").exists()


def test_cli_help_page_is_current():
    """docs/_static/cli_help.txt (shown on the CLI page) matches ``--help``."""
    env = dict(os.environ, COLUMNS="80")
    result = subprocess.run(
        [sys.executable, "-m", "skclust_ot.cli", "--help"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 0, result.stderr
    expected = (ROOT / "docs" / "_static" / "cli_help.txt").read_text(encoding="utf-8")
    assert result.stdout == expected, (
        "the CLI's --help changed; regenerate the docs copy with "
        "`COLUMNS=80 skclust-ot --help > docs/_static/cli_help.txt`"
    )
