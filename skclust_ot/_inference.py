"""Inference of a fitted SP2OTClustering: labels, soft assignments, embedding, score.

A mixin, so that the estimator module holds the parameters and the fit
recipe, and this one what a fitted model does with data. Predictions are per
sample (argmax of the head; no balancing across the batch) and stream in
chunks of ``PREDICT_CHUNK`` rows.
"""

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from . import _defaults as defaults

__all__ = ["InferenceMixin"]


class InferenceMixin:
    """``predict``, ``predict_proba``, ``embed`` and ``score``.

    Expects ``net_``, ``device_``, ``n_clusters`` and ``_validate_X`` from the
    estimator. ``transform`` stays in the estimator's own class body, where
    scikit-learn's ``set_output`` finds and wraps it.
    """

    @torch.no_grad()
    def _iter_logits(self, X, embed=False):
        module = self.net_.module_
        module.eval()
        forward = module.embed if embed else module
        step = defaults.PREDICT_CHUNK
        for start in range(0, X.shape[0], step):
            rows = slice(start, start + step)
            # a fresh float32 copy: never hands torch a read-only buffer
            chunk = torch.from_numpy(np.array(X[rows], dtype=np.float32))
            if not torch.isfinite(chunk).all():
                raise ValueError(
                    "X has values beyond the float32 range (about ±3.4e38) used by "
                    "the network; rescale the data as it was for fit."
                )
            yield rows, forward(chunk.to(self.device_)).cpu()

    def embed(self, X):
        """The learned embedding of each sample (the encoder's output, before the head).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.

        Returns
        -------
        embedding : ndarray of shape (n_samples, embedding_dim)
            What the cosine head compares with its prototypes; its direction
            decides the cluster.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        parts = [z.reshape(z.shape[0], -1).double().numpy()
                 for _, z in self._iter_logits(X, embed=True)]
        return np.concatenate(parts) if parts else np.empty((0, 0))

    def _predict_labels(self, X):
        # Fill a preallocated array: keeping many small per-chunk results
        # alive between the chunks' large temporaries fragmented the heap
        # (RSS grew by 2.4x the input on 1e6 x 64 before this).
        labels = np.empty(X.shape[0], dtype=np.int64)
        for rows, z in self._iter_logits(X):
            labels[rows] = z.argmax(dim=1).numpy()
        return labels

    def predict(self, X):
        """Cluster of each sample (argmax of the head; no balancing across X).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New data.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Index of the cluster each sample belongs to.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._predict_labels(X)

    def predict_proba(self, X):
        """Soft cluster assignments (softmax of the head's logits).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_clusters)
            Rows sum to 1.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        proba = np.empty((X.shape[0], self.n_clusters), dtype=np.float64)
        for rows, z in self._iter_logits(X):
            proba[rows] = torch.softmax(z.double(), dim=1).numpy()
        return proba

    def score(self, X, y=None):
        """Mean log-probability of each sample's assigned cluster.

        Higher is better (more confident assignments); 0 is the maximum.
        Comparable between models with the same ``n_clusters`` only, and it
        rewards confidence, not correctness: a larger ``head_scale`` (a
        sharper softmax) scores higher whatever the clusters. To choose
        parameters without labels, use
        :func:`skclust_ot.metrics.embedding_silhouette_score` as the
        ``scoring`` of a search; with reference labels, a label score such
        as ``scoring="adjusted_rand_score"``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        score : float
            Mean over the samples of ``log max_k p_k`` (at most 0).
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        total = 0.0
        for _, z in self._iter_logits(X):
            total += torch.log_softmax(z.double(), dim=1).max(dim=1).values.sum().item()
        return total / X.shape[0]
