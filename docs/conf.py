"""Sphinx configuration of the skclust_ot documentation.

Full build (executes the gallery's examples, which train models: minutes)::

    python -m sphinx -b html docs docs/_build/html

Quick build, as in tests/test_docs.py (examples shown but not executed;
warnings are errors)::

    python -m sphinx -W --keep-going -D plot_gallery=0 -b html docs docs/_build/html

The site is built in the scikit-learn ecosystem's usual way: the
pydata-sphinx-theme, MyST for the Markdown pages (design notes, benchmark
results), sphinx-gallery for ``examples/``, one autosummary page per public
object (templates in ``docs/_templates``), and numpydoc, whose
docstring validation turns every violation into a warning (so an error
under ``-W``). Generated folders (``generated/``, ``auto_examples/``,
``sg_execution_times.rst``) are git-ignored.

Intersphinx (links into the scikit-learn, NumPy, PyTorch and skorch docs)
needs their ``objects.inv`` inventories, which are downloaded at build time;
no installed package ships them, and the machines this project is built on
have no internet, where a failed download is a warning and so fails a
``-W`` build. The mapping is therefore off unless asked for:
``SKCLUST_OT_INTERSPHINX=1`` turns it on (for a build with network access,
such as a published site). ``SKCLUST_OT_INTERSPHINX=/some/folder`` also
turns it on but reads the inventories from local files in that folder,
named ``sklearn.inv``, ``numpy.inv``, ``torch.inv`` and ``skorch.inv``
(e.g. fetched once with ``curl -o sklearn.inv
https://scikit-learn.org/stable/objects.inv``), falling back to the
network for a missing file. Without it, references to those projects
(``:class:`sklearn.exceptions.ConvergenceWarning```) render as plain code
text, with no warning (the build is not nitpicky).
"""

import os
import re
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS / "_ext"))  # gallery_order

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
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    # docs/_static/screenshots: pictures of the rendered site, for reviewers,
    # not copied into it (static files match patterns relative to _static)
    "screenshots/*",
    # sphinx-gallery writes these next to the rendered examples
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.md5",
    "auto_examples/*.json",
    "auto_examples/*.zip",
]
templates_path = ["_templates"]
root_doc = "index"
language = "en"
pygments_style = "sphinx"

# -- MyST (the Markdown pages) -----------------------------------------------

# Pipe tables are part of MyST's CommonMark+GFM core; "dollarmath" is left
# out because the benchmark pages use "$" in plain text. Headings up to
# level 3 get anchors, so that "[see](#summary-mean-over-cases...)" links
# within a page resolve.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- autodoc / autosummary / numpydoc ----------------------------------------

autosummary_generate = True
autodoc_default_options = {"member-order": "bysource"}
# Signatures show defaults as written ("criterion=SoftTargetCrossEntropy"),
# not as their repr ("<class 'skclust_ot.nn._net.SoftTargetCrossEntropy'>").
autodoc_preserve_defaults = True
# "fit()" rather than "SP2OTClustering.fit()" in the page's table of contents.
toc_object_entries_show_parents = "hide"
# The class templates list the methods through autodoc's :members:; numpydoc's
# own member tables would list each method twice.
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
# Methods that override a torch or skorch method without a docstring of
# their own (forward, the callback hooks, ...) are not shown: autodoc would
# show the parent's docstring ("Define the computation performed at every
# call. Should be overridden by all subclasses."), which describes torch,
# not the override. A method that gains a docstring appears (and is
# validated) from then on.
autodoc_inherit_docstrings = False
# Objects whose docstrings are not ours are left out of the validation.
numpydoc_validation_exclude = {
    # scikit-learn's BaseEstimator / mixins, shown as inherited members on
    # SP2OTClustering's page (docs/_templates/estimator.rst)
    r"^skclust_ot\.SP2OTClustering\.(get_params|set_params|set_output|fit_transform"
    r"|get_metadata_routing|set_\w+_request)$",
    # A dict has no docstring of its own: numpydoc would validate dict's.
    # VARIANTS is documented by its "#:" comment in _estimator.py.
    r"^skclust_ot\.VARIANTS$",
    # No __init__ of its own, so numpydoc sees torch.nn.Module's
    # (*args, **kwargs) signature as undocumented parameters.
    r"^skclust_ot\.nn\.SoftTargetCrossEntropy$",
}

# Examples sections are shown as written, not rendered as plots.
numpydoc_use_plots = False

# -- sphinx-gallery (examples/) ------------------------------------------------

# The examples save their pictures into SKCLUST_OT_EXAMPLE_OUT (default: the
# current folder, which sphinx-gallery sets to examples/); the gallery shows
# the figures from matplotlib itself, so the files go to a scratch folder.
_EXAMPLE_OUT = Path(tempfile.gettempdir()) / "skclust_ot_gallery"
_EXAMPLE_OUT.mkdir(exist_ok=True)
os.environ.setdefault("SKCLUST_OT_EXAMPLE_OUT", str(_EXAMPLE_OUT))

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Executed: the plot_*.py scripts. train_distributed.py is shown with
    # its code but not run (it starts torch.distributed processes).
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    # The quick start first (docs/_ext/gallery_order.py).
    "within_subsection_order": "gallery_order.ExampleOrder",
    # "Examples using X" on each API page, from the names the scripts use.
    "doc_module": ("skclust_ot",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skclust_ot": None},
    "show_memory": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    # A failing example fails the (full) build.
    "only_warn_on_example_error": False,
}

# -- intersphinx ---------------------------------------------------------------

_INTERSPHINX_TARGETS = {
    "sklearn": "https://scikit-learn.org/stable/",
    "numpy": "https://numpy.org/doc/stable/",
    "torch": "https://docs.pytorch.org/docs/stable/",
    "skorch": "https://skorch.readthedocs.io/en/stable/",
    "python": "https://docs.python.org/3/",
}


def _intersphinx_mapping(setting):
    """The mapping asked for by ``SKCLUST_OT_INTERSPHINX`` (see the top)."""
    if setting in ("", "0"):
        return {}
    folder = None if setting == "1" else Path(setting)
    mapping = {}
    for name, url in _INTERSPHINX_TARGETS.items():
        local = folder / f"{name}.inv" if folder is not None else None
        if local is not None and local.exists():
            mapping[name] = (url, (str(local), None))
        else:
            mapping[name] = (url, None)
    return mapping


intersphinx_mapping = _intersphinx_mapping(os.environ.get("SKCLUST_OT_INTERSPHINX", ""))
intersphinx_timeout = 10

# -- HTML ---------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_title = f"skclust_ot {release}"
html_short_title = "skclust_ot"
html_theme_options = {
    "navbar_start": ["navbar-logo"],
    "navbar_center": ["navbar-nav"],
    "navbar_end": ["theme-switcher"],
    "navbar_persistent": ["search-button"],
    "header_links_before_dropdown": 6,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
    "logo": {"text": f"skclust_ot {release}"},
}
# No left sidebar on pages that have no sub-pages of their own.
html_sidebars = {
    "index": [],
    "user_guide": [],
    "cli": [],
    "scaling": [],
    "design": [],
}
html_show_sourcelink = False
html_context = {"default_mode": "light"}


# -- Optional pages ------------------------------------------------------------

# docs/solver_benchmark.md is written by benchmarks/bench_solver.py and may be
# absent from a checkout; benchmarks.rst marks its place with this comment
# (its toctree matches the page by a pattern, which matches nothing then).
_SOLVER_PLACEHOLDER = ".. solver-benchmark-placeholder"


def _insert_solver_benchmark(app, docname, source):
    if docname != "benchmarks":
        return
    if (DOCS / "solver_benchmark.md").exists():
        text = "Results: :doc:`solver_benchmark`.\n"
    else:
        text = (
            "Not generated in this checkout: run "
            "``python benchmarks/bench_solver.py --out docs/solver_benchmark.md`` "
            "to write ``docs/solver_benchmark.md``, then rebuild the docs.\n"
        )
    source[0] = source[0].replace(_SOLVER_PLACEHOLDER, text)


# The page of skclust_ot.VARIANTS (docs/_templates/variants.rst)
# shows its current value, one ablation a line (autodoc would print the dict
# on one unreadable line), in place of this comment.
_VARIANTS_PLACEHOLDER = ".. exec-variants-placeholder"


def _insert_variants(app, docname, source):
    if _VARIANTS_PLACEHOLDER not in source[0]:
        return
    lines = ["Current value (``inf`` is ``math.inf``)::", ""]
    for name, params in skclust_ot.VARIANTS.items():
        lines.append(f"       {name!r}: {params!r},")
    text = "\n   ".join(lines) + "\n"
    source[0] = source[0].replace(_VARIANTS_PLACEHOLDER, text)


# The methods that SP2OTClustering's page shows as inherited from
# scikit-learn (set_output, get_metadata_routing) carry scikit-learn's
# docstrings, whose :ref: roles name labels of scikit-learn's own site.
# With intersphinx on they resolve there; without it, they are shown as
# plain text (their titles) instead of failing the build. Only references
# written in scikit-learn's docstrings are treated so: a broken label of
# ours still warns.
def _sklearn_labels_as_text(app, env, node, contnode):
    if node.get("reftype") != "ref" or "sklearn" in intersphinx_mapping:
        return None
    if "docstring of sklearn." not in (node.source or ""):
        return None
    return contnode


def setup(app):
    app.connect("missing-reference", _sklearn_labels_as_text)
    app.connect("source-read", _insert_solver_benchmark)
    app.connect("source-read", _insert_variants)
    return {"parallel_read_safe": True}
