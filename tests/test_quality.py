"""Honest first numbers: default estimator vs KMeans on long-tailed real digits.

scikit-learn's digits, subsampled to a long tail (n_max 170, imbalance
ratio 10), three seeds. The default SP2OTClustering (given only n_clusters
and random_state) must keep all 10 clusters non-empty and reach a macro-F1
(after Hungarian matching) no more than 0.03 below KMeans(n_init=10) on the
same input, on average over the seeds and on every seed's cluster count.
"""

import numpy as np
import pytest
from sklearn.cluster import KMeans

from skclust_ot import SP2OTClustering
from skclust_ot.datasets import load_digits_long_tailed
from skclust_ot.metrics import clustering_report

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def reports():
    rows = []
    for seed in SEEDS:
        X, y = load_digits_long_tailed(n_max=170, imbalance_ratio=10, random_state=seed)
        ours = SP2OTClustering(n_clusters=10, random_state=seed).fit_predict(X)
        km = KMeans(10, n_init=10, random_state=seed).fit_predict(X)
        rows.append((clustering_report(y, ours), clustering_report(y, km)))
    return rows


def test_all_clusters_non_empty(reports):
    for ours, _ in reports:
        assert ours["n_clusters_found"] == 10


def test_macro_f1_close_to_kmeans(reports):
    ours = np.mean([r[0]["macro_f1"] for r in reports])
    km = np.mean([r[1]["macro_f1"] for r in reports])
    print(f"\nmacro-F1 over seeds {SEEDS}: SP2OT {ours:.3f}, KMeans {km:.3f}")
    for name in ("balanced_accuracy", "nmi"):
        print(f"{name}: SP2OT {np.mean([r[0][name] for r in reports]):.3f}, "
              f"KMeans {np.mean([r[1][name] for r in reports]):.3f}")
    assert ours >= km - 0.03
