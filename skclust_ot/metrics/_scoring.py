"""A label-free scorer for model selection: silhouette of the clusters in the learned embedding."""

import numpy as np
from sklearn.metrics import silhouette_score

__all__ = ["embedding_silhouette_score"]


def _final_step(estimator):
    steps = getattr(estimator, "steps", None)
    if steps is None:
        return None, estimator
    return estimator[:-1], estimator[-1]


def embedding_silhouette_score(estimator, X, y=None, *, sample_size=5000, random_state=0):
    """Cosine silhouette of the predicted clusters in the model's learned embedding.

    A scorer with scikit-learn's ``scorer(estimator, X, y)`` signature, for
    choosing parameters without reference labels, e.g.
    ``GridSearchCV(est, grid, scoring=embedding_silhouette_score)``. The
    clusters are ``estimator.predict(X)``; the embedding is the clusterer's
    ``embed(X)`` (for :class:`skclust_ot.SP2OTClustering`, the encoder's
    output that the cosine head compares with its prototypes), after the
    earlier steps when the estimator is a :class:`~sklearn.pipeline.Pipeline`.
    A clusterer without ``embed`` is scored in its input space.

    Parameters
    ----------
    estimator : fitted clusterer or Pipeline ending in one
        Must have ``predict``.
    X : array-like of shape (n_samples, n_features)
        Data to score (e.g. a held-out fold).
    y : Ignored
        Not used, present for the scorer signature.
    sample_size : int or None, default=5000
        Silhouette on at most this many samples (it is quadratic in them).
    random_state : int, default=0
        Seeds the subsample.

    Returns
    -------
    score : float
        In [-1, 1], higher is better; -1 when fewer than two clusters are
        found (a silhouette is not defined).

    Notes
    -----
    Unlike :meth:`SP2OTClustering.score`, it does not reward confidence
    alone: a sharper head does not change it. It compares partitions by how
    well separated they are in the embedding the model itself learned, so
    it suits choosing parameters of one model family; it knows nothing of
    the true classes.
    """
    labels = np.asarray(estimator.predict(X))
    if np.unique(labels).size < 2:
        return -1.0
    head, clusterer = _final_step(estimator)
    data = head.transform(X) if head is not None else X
    space = clusterer.embed(data) if hasattr(clusterer, "embed") else np.asarray(data)
    space = np.asarray(space, dtype=np.float64).reshape(len(labels), -1)
    if sample_size is not None and sample_size >= len(labels):
        sample_size = None
    return float(silhouette_score(space, labels, metric="cosine", sample_size=sample_size,
                                  random_state=random_state))
