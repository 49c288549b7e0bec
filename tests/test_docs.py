"""The Sphinx documentation builds without a single warning.

Skipped unless Sphinx and numpydoc are installed (``pip install -e ".[docs]"``).
The build reads the docstrings, so a docstring that breaks the reST fails it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("numpydoc")

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
         "-d", str(tmp_path / "doctrees"), "docs", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert (out / "index.html").exists()
    assert (out / "api.html").exists()
    api = (out / "api.html").read_text(encoding="utf-8")
    assert "SP2OTClustering" in api and "p2ot" in api


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
