"""skclust_ot: clustering of imbalanced data with SP²OT pseudo-labels.

The public surface: :class:`SP2OTClustering` (a scikit-learn estimator),
:data:`VARIANTS` (the paper's ablations as parameter settings), and the
subpackages :mod:`skclust_ot.ot` (the solver), :mod:`skclust_ot.metrics` and
:mod:`skclust_ot.datasets`.
"""

from ._estimator import VARIANTS, SP2OTClustering
from ._version import __version__

__all__ = ["SP2OTClustering", "VARIANTS", "__version__"]
