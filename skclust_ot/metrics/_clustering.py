"""Clustering quality after Hungarian matching of clusters to classes.

Cluster ids are arbitrary, so every score here first matches predicted clusters
to true classes one-to-one so that the number of correctly matched samples is
maximal (the Hungarian algorithm on the contingency matrix), then scores the
matched prediction. This is the evaluation protocol of P²OT / SP²OT, whose
headline "ACC" is :func:`balanced_clustering_accuracy`.
"""

import math
import numbers

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (
    adjusted_rand_score,
    f1_score,
    normalized_mutual_info_score,
)
from sklearn.metrics.cluster import contingency_matrix
from sklearn.utils import check_consistent_length, column_or_1d

__all__ = [
    "match_labels",
    "clustering_accuracy",
    "balanced_clustering_accuracy",
    "matched_f1_score",
    "head_medium_tail_accuracy",
    "clustering_report",
]

# Encoded prediction of a sample whose cluster was matched to no class; it is
# outside the class codes 0..n_classes-1, so such samples always count as errors.
_UNMATCHED = -1


def _encode_labels(labels, name):
    """Validate one label vector and return ``(unique_labels, codes)``."""
    labels = column_or_1d(labels, warn=True)
    if labels.shape[0] == 0:
        raise ValueError(f"{name} is empty; at least one sample is needed.")
    if labels.dtype.kind in "fc" and not np.all(np.isfinite(labels)):
        raise ValueError(
            f"{name} contains NaN or infinity; every sample needs a finite label."
        )
    try:
        uniques, codes = np.unique(labels, return_inverse=True)
    except TypeError as exc:
        raise ValueError(
            f"{name} mixes label types that cannot be sorted together "
            f"(e.g. strings and numbers, or None); use labels of one type."
        ) from exc
    return uniques, codes.reshape(-1)


class _Matching:
    """Hungarian matching of predicted clusters to true classes.

    Attributes
    ----------
    classes, clusters : ndarray
        Sorted unique true labels and predicted labels.
    class_codes, cluster_codes : ndarray of int
        Per-sample indices into ``classes`` and ``clusters``.
    contingency : ndarray of shape (n_classes, n_clusters)
        Sample counts per (class, cluster) pair.
    cluster_to_class : ndarray of shape (n_clusters,)
        Matched class index of each cluster, or ``_UNMATCHED``.
    class_hits : ndarray of shape (n_classes,)
        Samples of each class that lie in the cluster matched to it.
    class_sizes : ndarray of shape (n_classes,)
        Samples of each class.
    """

    def __init__(self, y_true, y_pred):
        check_consistent_length(y_true, y_pred)
        self.classes, self.class_codes = _encode_labels(y_true, "y_true")
        self.clusters, self.cluster_codes = _encode_labels(y_pred, "y_pred")
        self.contingency = contingency_matrix(self.class_codes, self.cluster_codes)
        class_idx, cluster_idx = linear_sum_assignment(self.contingency, maximize=True)
        self.cluster_to_class = np.full(len(self.clusters), _UNMATCHED, dtype=np.intp)
        self.cluster_to_class[cluster_idx] = class_idx
        # A class that got no cluster (more classes than clusters) keeps 0 hits.
        self.class_hits = np.zeros(len(self.classes), dtype=np.int64)
        self.class_hits[class_idx] = self.contingency[class_idx, cluster_idx]
        self.class_sizes = self.contingency.sum(axis=1)

    @property
    def matched_pred_codes(self):
        """Per-sample matched class index, ``_UNMATCHED`` for unmatched clusters."""
        return self.cluster_to_class[self.cluster_codes]

    @property
    def class_recall(self):
        """Fraction of each class's samples whose cluster is matched to it."""
        return self.class_hits / self.class_sizes


def match_labels(y_true, y_pred):
    """Match predicted clusters to true classes with the Hungarian algorithm.

    The one-to-one matching maximises the number of samples whose cluster is
    matched to their own class. When there are more clusters than classes, the
    surplus clusters are matched to no class; when there are fewer, some
    classes receive no cluster.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels, of any sortable hashable type (ints, strings, ...).
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels, of any sortable hashable type. A noise label
        such as ``-1`` is treated as one more cluster.

    Returns
    -------
    mapping : dict
        ``{cluster_label: class_label}`` for every matched cluster. Unmatched
        clusters are absent; their samples count as errors in every score of
        this module. Keys and values are the original labels, as Python
        scalars where possible.

    See Also
    --------
    clustering_accuracy : Overall accuracy under this matching.
    balanced_clustering_accuracy : Class-averaged recall under this matching.

    Notes
    -----
    If several matchings reach the same number of correct samples, the one
    returned by :func:`scipy.optimize.linear_sum_assignment` is used.

    Examples
    --------
    >>> from skclust_ot.metrics import match_labels
    >>> match_labels(["cat", "cat", "dog", "dog"], [1, 1, 0, 0])
    {0: 'dog', 1: 'cat'}
    >>> match_labels([0, 0, 1, 1], [0, 0, 1, 2])  # cluster 2 is surplus
    {0: 0, 1: 1}
    """
    matching = _Matching(y_true, y_pred)
    clusters = matching.clusters.tolist()
    classes = matching.classes.tolist()
    return {
        clusters[cluster]: classes[cls]
        for cluster, cls in enumerate(matching.cluster_to_class)
        if cls != _UNMATCHED
    }


def clustering_accuracy(y_true, y_pred):
    """Fraction of samples whose cluster is matched to their class.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels.

    Returns
    -------
    accuracy : float
        Overall accuracy in [0, 1] after the matching of :func:`match_labels`.
        On imbalanced data it is dominated by the large classes; see
        :func:`balanced_clustering_accuracy`.

    See Also
    --------
    balanced_clustering_accuracy : The class-averaged variant.

    Examples
    --------
    >>> from skclust_ot.metrics import clustering_accuracy
    >>> clustering_accuracy([0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    >>> clustering_accuracy([0, 0, 0, 1], [0, 0, 1, 1])
    0.75
    """
    matching = _Matching(y_true, y_pred)
    return float(matching.class_hits.sum() / matching.class_sizes.sum())


def balanced_clustering_accuracy(y_true, y_pred):
    """Matched per-class recall averaged over classes (the SP²OT paper's "ACC").

    Clusters are matched to classes as in :func:`match_labels` (maximising the
    number of correctly matched samples), then the recall of every class is
    computed and averaged with equal weight per class, so tail classes count as
    much as head classes.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels.

    Returns
    -------
    balanced_accuracy : float
        Mean matched class recall in [0, 1]. A class matched to no cluster has
        recall 0.

    See Also
    --------
    clustering_accuracy : The sample-averaged variant.
    head_medium_tail_accuracy : The same recalls grouped by class size.

    References
    ----------
    .. [1] C. Zhang, H. Ren, X. He, "SP²OT: Semantic-Regularized Progressive
       Partial Optimal Transport for Imbalanced Clustering", arXiv:2404.03446.

    Examples
    --------
    Putting everything in one cluster is 80 % accurate here but recovers only
    one of two classes:

    >>> from skclust_ot.metrics import balanced_clustering_accuracy
    >>> y_true = [0, 0, 0, 0, 1]
    >>> balanced_clustering_accuracy(y_true, [0, 0, 0, 0, 0])
    0.5
    """
    matching = _Matching(y_true, y_pred)
    return float(matching.class_recall.mean())


def matched_f1_score(y_true, y_pred, average="macro"):
    """F1 score of the predicted clusters after Hungarian matching to classes.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels.
    average : {"macro", "weighted", "micro"} or None, default="macro"
        How per-class F1 scores are combined, as in
        :func:`sklearn.metrics.f1_score`. ``None`` returns the per-class
        scores in the order of ``np.unique(y_true)``.

    Returns
    -------
    f1 : float or ndarray of shape (n_classes,)
        F1 after matching. Samples in unmatched clusters are false negatives of
        their class and false positives of no class; a class matched to no
        cluster scores 0.

    See Also
    --------
    match_labels : The matching used.

    Examples
    --------
    >>> from skclust_ot.metrics import matched_f1_score
    >>> y_true = [0, 0, 0, 1, 1, 1]
    >>> y_pred = [5, 5, 7, 7, 7, 7]
    >>> round(matched_f1_score(y_true, y_pred), 4)
    0.8286
    >>> matched_f1_score(y_true, y_pred, average=None).round(4).tolist()
    [0.8, 0.8571]
    """
    allowed = ("macro", "weighted", "micro", None)
    if average not in allowed:
        raise ValueError(f"average must be one of {allowed}; got {average!r}.")
    return _matched_f1(_Matching(y_true, y_pred), average)


def _matched_f1(matching, average):
    score = f1_score(
        matching.class_codes,
        matching.matched_pred_codes,
        labels=np.arange(len(matching.classes)),
        average=average,
        zero_division=0.0,
    )
    return score if average is None else float(score)


def _round_half_up(value):
    # A tiny slack so that products such as 0.3 * 5 that should be exactly
    # x.5 are not pushed below it by floating-point round-off.
    return math.floor(value + 0.5 + 1e-9)


def _group_sizes(n_classes, fractions):
    """Number of classes in the head, medium and tail groups.

    Head and tail get ``round_half_up(fraction * n_classes)`` classes, at least
    one each; the medium group takes the rest. With three or more classes the
    head and tail are then capped so that the medium group keeps at least one
    class. With two classes the medium group is empty; with one, only the head
    is non-empty.
    """
    head_fraction, _, tail_fraction = fractions
    n_head = max(1, _round_half_up(head_fraction * n_classes))
    n_tail = max(1, _round_half_up(tail_fraction * n_classes))
    if n_classes >= 3:
        n_head = min(n_head, n_classes - 2)
        n_tail = min(n_tail, n_classes - 1 - n_head)
    else:
        n_head = min(n_head, n_classes)
        n_tail = min(n_tail, n_classes - n_head)
    return n_head, n_classes - n_head - n_tail, n_tail


def _check_fractions(fractions):
    try:
        fractions = tuple(fractions)
    except TypeError as exc:
        raise ValueError(
            f"fractions must be three numbers (head, medium, tail); got {fractions!r}."
        ) from exc
    if len(fractions) != 3 or not all(
        isinstance(f, numbers.Real) and not isinstance(f, bool) for f in fractions
    ):
        raise ValueError(
            f"fractions must be three numbers (head, medium, tail); got {fractions!r}."
        )
    if any(not f > 0 for f in fractions) or not math.isclose(
        sum(fractions), 1.0, abs_tol=1e-6
    ):
        raise ValueError(
            "fractions must be positive and sum to 1, e.g. (0.3, 0.4, 0.3); "
            f"got {fractions!r}."
        )
    return fractions


def head_medium_tail_accuracy(y_true, y_pred, fractions=(0.3, 0.4, 0.3)):
    """Mean matched class accuracy of the head, medium and tail classes.

    Classes are sorted by their number of samples in ``y_true``, largest
    first (ties keep the order of ``np.unique(y_true)``), and split into a
    head, a medium and a tail group. Each group's score is the mean over its
    classes of the matched per-class recall used by
    :func:`balanced_clustering_accuracy`.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels.
    fractions : tuple of three floats, default=(0.3, 0.4, 0.3)
        Shares of the classes in the head, medium and tail groups; positive,
        summing to 1.

    Returns
    -------
    scores : dict
        ``{"head": float, "medium": float, "tail": float}``. A group with no
        class (only possible with fewer than three classes) scores NaN.

    See Also
    --------
    balanced_clustering_accuracy : The mean over all classes.

    Notes
    -----
    Group sizes, for ``n_classes`` classes and fractions ``(h, m, t)``:
    ``n_head = max(1, round_half_up(h * n_classes))`` and
    ``n_tail = max(1, round_half_up(t * n_classes))``; with at least three
    classes, ``n_head`` is capped at ``n_classes - 2`` and ``n_tail`` at
    ``n_classes - 1 - n_head``; the medium group gets the remaining
    ``n_classes - n_head - n_tail`` classes. So every group is non-empty when
    ``n_classes >= 3``. With the default fractions, 10 classes split 3/4/3,
    5 classes 2/1/2 and 3 classes 1/1/1. With two classes the split is 1/0/1,
    with one class 1/0/0.

    Examples
    --------
    >>> from skclust_ot.metrics import head_medium_tail_accuracy
    >>> y_true = [0] * 6 + [1] * 3 + [2] * 2
    >>> y_pred = [0] * 6 + [1, 1, 0] + [0, 0]
    >>> scores = head_medium_tail_accuracy(y_true, y_pred)
    >>> {group: round(score, 4) for group, score in scores.items()}
    {'head': 1.0, 'medium': 0.6667, 'tail': 0.0}
    """
    fractions = _check_fractions(fractions)
    return _head_medium_tail(_Matching(y_true, y_pred), fractions)


def _head_medium_tail(matching, fractions):
    recall = matching.class_recall
    order = np.argsort(-matching.class_sizes, kind="stable")
    n_head, n_medium, _ = _group_sizes(len(order), fractions)
    groups = {
        "head": order[:n_head],
        "medium": order[n_head : n_head + n_medium],
        "tail": order[n_head + n_medium :],
    }
    return {
        name: float(recall[members].mean()) if len(members) else float("nan")
        for name, members in groups.items()
    }


def clustering_report(y_true, y_pred):
    """All clustering scores used in the SP²OT evaluation, in one dict.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted cluster labels.

    Returns
    -------
    report : dict
        ``"balanced_accuracy"`` (:func:`balanced_clustering_accuracy`),
        ``"accuracy"`` (:func:`clustering_accuracy`), ``"macro_f1"``
        (:func:`matched_f1_score`), ``"nmi"``
        (:func:`sklearn.metrics.normalized_mutual_info_score`), ``"ari"``
        (:func:`sklearn.metrics.adjusted_rand_score`), ``"head"``,
        ``"medium"``, ``"tail"`` (:func:`head_medium_tail_accuracy` with
        default fractions) as floats, and ``"n_clusters_found"``, the number
        of distinct labels in ``y_pred`` (non-empty clusters), as an int.

    Examples
    --------
    >>> from skclust_ot.metrics import clustering_report
    >>> report = clustering_report([0, 0, 1, 1, 2, 2], [1, 1, 0, 0, 2, 2])
    >>> {k: round(v, 4) for k, v in report.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'balanced_accuracy': 1.0, 'accuracy': 1.0, 'macro_f1': 1.0, 'nmi': 1.0,
     'ari': 1.0, 'head': 1.0, 'medium': 1.0, 'tail': 1.0, 'n_clusters_found': 3}
    """
    matching = _Matching(y_true, y_pred)
    class_codes, cluster_codes = matching.class_codes, matching.cluster_codes
    groups = _head_medium_tail(matching, (0.3, 0.4, 0.3))
    return {
        "balanced_accuracy": float(matching.class_recall.mean()),
        "accuracy": float(matching.class_hits.sum() / matching.class_sizes.sum()),
        "macro_f1": _matched_f1(matching, "macro"),
        "nmi": float(normalized_mutual_info_score(class_codes, cluster_codes)),
        "ari": float(adjusted_rand_score(class_codes, cluster_codes)),
        "head": groups["head"],
        "medium": groups["medium"],
        "tail": groups["tail"],
        "n_clusters_found": int(len(matching.clusters)),
    }
