"""
Choosing parameters with a Pipeline and GridSearchCV
====================================================

:class:`skclust_ot.SP2OTClustering` is a scikit-learn estimator, so it goes
into a :class:`~sklearn.pipeline.Pipeline` and is tuned by
:class:`~sklearn.model_selection.GridSearchCV` like any other. Because it
predicts clusters for new samples (``predict``), each candidate is fitted on
the training folds and scored on the held-out fold.

Scoring a clustering needs reference labels. When a labelled sample of the
data exists, ``scoring="adjusted_rand_score"`` compares the clusters with it
(cluster numbers do not matter to the ARI). Here the labels are the wine
cultivars of scikit-learn's wine data, made long-tailed. Without labels,
``est.score`` (the mean log-probability of the assigned cluster) is the
default score, but it only compares models with the same ``n_clusters``.

Run it with ``python examples/plot_pipeline_gridsearch.py``;
``SKCLUST_OT_EXAMPLE_FAST=1`` searches a smaller grid for 2 epochs. The
picture goes to the folder in ``SKCLUST_OT_EXAMPLE_OUT`` (default: the
current folder).
"""

import os
from pathlib import Path

import numpy as np
from sklearn.datasets import load_wine
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skclust_ot import SP2OTClustering
from skclust_ot.datasets import make_long_tailed
from skclust_ot.plotting import plot_cluster_sizes

FAST = os.environ.get("SKCLUST_OT_EXAMPLE_FAST") == "1"
OUT = Path(os.environ.get("SKCLUST_OT_EXAMPLE_OUT", "."))

X, y = load_wine(return_X_y=True)
X, y = make_long_tailed(X, y, n_max=59, imbalance_ratio=5, random_state=0)

# %%
# The pipeline: standardize each column, then cluster. Parameters of a step
# are addressed as ``<step name>__<parameter>``.
pipe = make_pipeline(
    StandardScaler(),
    SP2OTClustering(n_clusters=3, max_epochs=2 if FAST else 10, random_state=0),
)

# kl_weight: how strongly cluster sizes are pulled towards equal (large =
# balanced); semantic_weight: how strongly neighbours are kept together
# (0 is P2OT).
if FAST:
    grid = {"sp2otclustering__kl_weight": [0.1, 1.0]}
else:
    grid = {"sp2otclustering__kl_weight": [0.1, 1.0, 10.0],
            "sp2otclustering__semantic_weight": [0.0, 0.2]}

# Shuffled folds: the long-tailed sample is ordered by class otherwise.
cv = KFold(n_splits=2 if FAST else 3, shuffle=True, random_state=0)
search = GridSearchCV(pipe, grid, scoring="adjusted_rand_score", cv=cv)
search.fit(X, y)

# %%
# The results, best first.
results = search.cv_results_
for i in np.argsort(results["rank_test_score"], kind="stable"):
    params = ", ".join(f"{name.split('__')[1]}={value}"
                       for name, value in results["params"][i].items())
    print(f"ARI {results['mean_test_score'][i]:.3f} +- {results['std_test_score'][i]:.3f}"
          f"  {params}")
print(f"best: {search.best_params_} (held-out ARI {search.best_score_:.3f})")

# The refitted best pipeline clusters new data in one call.
best = search.best_estimator_
print("cluster sizes of the best pipeline:", np.bincount(best.predict(X)).tolist(),
      "true:", np.bincount(y).tolist())

# %%
# plot_cluster_sizes reads the clusterer at the end of a pipeline.
ax = plot_cluster_sizes(best, y_true=y)
path = OUT / "pipeline_gridsearch.png"
ax.figure.savefig(path, dpi=100)
print(f"saved the picture to {path.resolve()}")
