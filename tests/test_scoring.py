"""The label-free scorer and what score() rewards."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import silhouette_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skclust_ot import SP2OTClustering
from skclust_ot.metrics import embedding_silhouette_score

FAST = dict(max_epochs=2, random_state=0)


@pytest.fixture(scope="module")
def blobs():
    return make_blobs(240, centers=[[0, 0], [5, 0], [0, 5]], random_state=0)


def test_score_rewards_a_sharper_head_whatever_the_clusters(blobs):
    X, _ = blobs
    scores = [SP2OTClustering(n_clusters=3, head_scale=s, **FAST).fit(X).score(X)
              for s in (5.0, 30.0)]
    assert scores[1] > scores[0]  # the documented bias of score()


def test_embedding_silhouette_is_the_cosine_silhouette_of_the_embedding(blobs):
    X, _ = blobs
    est = SP2OTClustering(n_clusters=3, **FAST).fit(X)
    emb = est.embed(X)
    assert emb.shape == (X.shape[0], 64)
    expected = silhouette_score(emb, est.predict(X), metric="cosine")
    assert embedding_silhouette_score(est, X) == pytest.approx(expected)


def test_embedding_silhouette_in_a_pipeline_and_without_embed(blobs):
    X, _ = blobs
    pipe = make_pipeline(StandardScaler(), SP2OTClustering(n_clusters=3, **FAST)).fit(X)
    emb = pipe[-1].embed(pipe[:-1].transform(X))
    expected = silhouette_score(emb, pipe.predict(X), metric="cosine")
    assert embedding_silhouette_score(pipe, X) == pytest.approx(expected)
    km = KMeans(3, n_init=3, random_state=0).fit(X)
    assert embedding_silhouette_score(km, X) == pytest.approx(
        silhouette_score(X, km.predict(X), metric="cosine"))


def test_embedding_silhouette_prefers_the_right_number_of_clusters_in_a_search(blobs):
    X, _ = blobs
    grid = GridSearchCV(SP2OTClustering(**FAST), {"n_clusters": [2, 3, 6]},
                        scoring=embedding_silhouette_score, cv=2)
    grid.fit(X)
    assert grid.best_params_["n_clusters"] == 3
