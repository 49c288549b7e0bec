"""Warning classes of skclust_ot, for users who filter them.

This module sits at the bottom of the package: every layer may import it, and
it imports nothing from skclust_ot.
"""

from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning

__all__ = ["ConvergenceWarning"]


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
