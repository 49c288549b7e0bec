"""Warning classes of skclust_ot, for users who filter them.

This module sits at the bottom of the package: every layer may import it, and
it imports nothing from skclust_ot.
"""

import os
import sys

import sklearn
from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning

__all__ = ["ConvergenceWarning", "OutlierWarning"]


class ConvergenceWarning(_SklearnConvergenceWarning):
    """Warned when a solver or a fit stops short of what was asked.

    Raised by the optimal-transport solvers when they stop before meeting
    their tolerance (the returned plan is still the best iterate found; its
    marginal errors are in the solver's ``log``), and by
    :class:`~skclust_ot.SP2OTClustering` when a fit ends with fewer non-empty
    clusters than ``n_clusters``.

    A subclass of :class:`sklearn.exceptions.ConvergenceWarning`, so that
    filtering either class silences both::

        import warnings
        from sklearn.exceptions import ConvergenceWarning
        warnings.simplefilter("ignore", ConvergenceWarning)
    """


class OutlierWarning(UserWarning):
    """Warned when a few far values dominate the spread of the training data.

    Raised by :class:`~skclust_ot.SP2OTClustering` with
    ``standardize="global"`` when the data's global scale is much larger
    than its robust (interquartile) scale: dividing by it squeezes the bulk
    of the data, whose clusters can then merge (a fit may end with only a
    few non-empty clusters). ``standardize="robust"`` (``--standardize
    robust`` on the command line) uses outlier-proof statistics and clips
    far values; removing the outliers works too. Silence it with::

        import warnings
        from skclust_ot.exceptions import OutlierWarning
        warnings.simplefilter("ignore", OutlierWarning)
    """


# warnings skip the frames of skclust_ot and of scikit-learn (fit's wrappers)
_INTERNAL_DIRS = tuple(os.path.dirname(os.path.abspath(path)) + os.sep
                       for path in (sklearn.__file__, __file__))


def _external_stacklevel():
    """``stacklevel`` that makes a warning name the user's line.

    Called by the function that is about to call :func:`warnings.warn`: the
    number of frames from that function up to the first one outside
    skclust_ot and scikit-learn (whose wrappers, such as ``_fit_context``,
    sit between a user's ``fit`` call and ours).
    """
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame = frame.f_back
        level += 1
    return level
