"""Clustering scores after Hungarian matching of clusters to classes.

The evaluation protocol of the SP²OT paper: class-averaged matched accuracy
("ACC"), overall matched accuracy, matched F1, NMI, ARI and the accuracy of the
head, medium and tail classes; and a label-free scorer for model selection.
"""

from ._clustering import (
    balanced_clustering_accuracy,
    clustering_accuracy,
    clustering_report,
    head_medium_tail_accuracy,
    match_labels,
    matched_f1_score,
)
from ._scoring import embedding_silhouette_score

__all__ = [
    "match_labels",
    "clustering_accuracy",
    "balanced_clustering_accuracy",
    "matched_f1_score",
    "head_medium_tail_accuracy",
    "clustering_report",
    "embedding_silhouette_score",
]
