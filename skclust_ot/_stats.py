"""Statistics of the training data: moments, robust scale, outlier check, init sample.

Helpers of :class:`skclust_ot.SP2OTClustering` that look at the data before
training. Each works on row blocks or on a bounded sample, so none holds a
float64 copy of a large data set.
"""

import warnings

import numpy as np
import torch

from ._defaults import INIT_MAX_ROWS
from .exceptions import OutlierWarning, _external_stacklevel

# Robust scaling clips values beyond this many robust standard deviations
# (IQR / 1.349, at least the global robust scale) of their feature.
_ROBUST_CLIP = 10.0


def _robust_statistics(X64):
    """Per-feature medians, one global scale and per-feature clip bounds.

    The scale is the root mean square of the features' IQR / 1.349 (the
    standard deviation for Gaussian data), falling back to the plain global
    scale when most features are constant within their quartiles.
    """
    q1, centre, q3 = np.percentile(X64, [25, 50, 75], axis=0)
    spread = (q3 - q1) / 1.349
    scale = float(np.sqrt(np.mean(np.square(spread))))
    if not scale > 0:
        scale = float(np.sqrt(np.mean(np.square(X64.std(axis=0)))))
    if not (scale > 0 and np.isfinite(scale)):
        scale = 1.0
    reach = _ROBUST_CLIP * np.maximum(spread, scale)
    return centre, scale, centre - reach, centre + reach


# standardize="global" warns when its scale exceeds the robust one this much
_OUTLIER_SCALE_RATIO = 10.0


def _warn_if_outliers_dominate(X, scale, seed, max_rows=10_000):
    """Warn when a few far values set the global scale and squeeze the bulk.

    Compares the global scale with the robust one (from interquartile
    ranges) on at most ``max_rows`` rows.
    """
    robust = _robust_statistics(_sample_rows(X, max_rows, seed))[1]
    if scale > _OUTLIER_SCALE_RATIO * robust:
        warnings.warn(
            f"The spread of X is dominated by a few far values: its global scale is "
            f"{scale / robust:.3g} times its robust (interquartile) scale, which squeezes "
            "the bulk of the data and can merge its clusters. Use "
            "standardize='robust' (outlier-proof statistics, clipped far values) or "
            "remove the outliers.",
            OutlierWarning,
            stacklevel=_external_stacklevel(),
        )


def _init_rows(labels, n_clusters, seed, max_rows=INIT_MAX_ROWS):
    """Rows on which the head's start is fitted: all, or a per-cluster capped sample.

    Above ``max_rows`` rows each cluster contributes at most
    ``max_rows // n_clusters`` of its rows (small clusters all of theirs), so
    every cluster keeps its prototype while time and memory stay bounded.
    """
    labels = np.asarray(labels)
    if labels.shape[0] <= max_rows:
        return slice(None)
    rng = np.random.default_rng(seed)
    cap = max(1, max_rows // n_clusters)
    picked = []
    for k in range(n_clusters):
        members = np.flatnonzero(labels == k)
        if members.size > cap:
            members = rng.choice(members, cap, replace=False)
        picked.append(members)
    return np.sort(np.concatenate(picked))


def _torch_index(rows):
    return rows if isinstance(rows, slice) else torch.from_numpy(rows)


# Statistics of the data are accumulated over row blocks of this size in
# float64 (no float64 copy of the whole data).
_STATS_CHUNK = 65_536


def _column_moments(X, low=None, high=None, chunk=_STATS_CHUNK):
    """Per-feature mean and standard deviation in float64, two passes over row blocks.

    Values are clipped to ``[low, high]`` first when bounds are given. With a
    single block this is exactly ``X.mean(0)`` and ``X.std(0)`` in float64.
    """
    n = X.shape[0]

    def blocks():
        for i in range(0, n, chunk):
            block = np.asarray(X[i:i + chunk], dtype=np.float64)
            if low is not None:
                block = np.clip(block, low, high)
            yield block

    total = None
    for block in blocks():
        part = block.sum(axis=0)
        total = part if total is None else total + part
    mean = total / n
    squares = None
    for block in blocks():
        part = np.square(block - mean).sum(axis=0)
        squares = part if squares is None else squares + part
    return mean, np.sqrt(squares / n)


def _sample_rows(X, max_rows, seed):
    """At most ``max_rows`` rows of X (a seeded random subset), as float64."""
    if X.shape[0] <= max_rows:
        return np.asarray(X, dtype=np.float64)
    pick = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_rows, replace=False))
    return np.asarray(X[pick], dtype=np.float64)
