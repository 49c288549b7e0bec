"""skclust_ot: clustering of imbalanced data with SP²OT pseudo-labels.

The public surface: :class:`SP2OTClustering` (a scikit-learn estimator),
:data:`VARIANTS` (the paper's ablations as parameter settings),
:func:`show_versions` (for bug reports), and the subpackages
:mod:`skclust_ot.ot` (the solver), :mod:`skclust_ot.metrics` and
:mod:`skclust_ot.datasets`.

The names are imported on first use, so that ``import skclust_ot`` (and the
``skclust-ot --help`` command) does not pay for torch and scikit-learn
until they are needed.
"""

import importlib
import importlib.util

from ._version import __version__

__all__ = ["SP2OTClustering", "VARIANTS", "show_versions", "__version__"]

# public name -> module (relative to this package) that defines it
_LAZY = {
    "SP2OTClustering": "._estimator",
    "VARIANTS": "._estimator",
    "show_versions": "._versions",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f".{name}", __name__)  # skclust_ot.ot, ...
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
