"""Tests of the sparse kNN semantic graph."""

import importlib.util
import sys

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from skclust_ot.ot import _graph, knn_graph


def brute_force_knn(features, n_neighbors):
    dist = cdist(features, features, "sqeuclidean")
    np.fill_diagonal(dist, np.inf)
    order = np.argsort(dist, axis=1, kind="stable")[:, :n_neighbors]
    return order, np.take_along_axis(dist, order, axis=1)


def as_rows(graph):
    """Dict row -> {col: weight} of a coalesced sparse graph."""
    rows, cols = graph.indices().tolist()
    values = graph.values().tolist()
    out = {}
    for i, j, w in zip(rows, cols, values):
        out.setdefault(i, {})[j] = w
    return out


@pytest.mark.parametrize("chunk_size", [7, 4096])
@pytest.mark.parametrize("n_neighbors", [1, 5, 20])
def test_matches_brute_force(chunk_size, n_neighbors):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(150, 6))
    sigma = 1.5
    graph = knn_graph(torch.from_numpy(features), n_neighbors, sigma=sigma,
                      chunk_size=chunk_size)
    assert graph.is_sparse and graph.is_coalesced()
    assert graph.shape == (150, 150) and graph.dtype == torch.float64
    assert graph._nnz() == 150 * n_neighbors
    order, sq_dist = brute_force_knn(features, n_neighbors)
    rows = as_rows(graph)
    for i in range(150):
        assert set(rows[i]) == set(order[i].tolist())
        expected = np.exp(-sq_dist[i] / (2 * sigma**2 * features.shape[1]))
        np.testing.assert_allclose([rows[i][j] for j in order[i]], expected, rtol=1e-10)


def test_float32_and_chunking_agree():
    rng = np.random.default_rng(1)
    features = torch.from_numpy(rng.normal(size=(300, 10)).astype(np.float32))
    graph = knn_graph(features, 8)
    chunked = knn_graph(features, 8, chunk_size=13)
    assert graph.dtype == torch.float32
    assert torch.equal(graph.indices(), chunked.indices())
    torch.testing.assert_close(graph.values(), chunked.values())
    reference = knn_graph(features.double(), 8)
    agree = (graph.indices() == reference.indices()).all(dim=0).double().mean().item()
    assert agree > 0.99  # only near-ties may differ in float32
    torch.testing.assert_close(graph.values().double(), reference.values(), rtol=1e-4,
                               atol=1e-6)


def test_no_self_edges_and_exact_row_counts():
    rng = np.random.default_rng(2)
    graph = knn_graph(torch.from_numpy(rng.normal(size=(64, 3))), 9)
    rows, cols = graph.indices()
    assert (rows != cols).all()
    assert torch.bincount(rows, minlength=64).eq(9).all()
    assert (graph.values() > 0).all() and (graph.values() <= 1).all()


def test_duplicates_exclude_only_the_sample_itself():
    base = torch.tensor([[0.0, 0.0], [5.0, 5.0], [10.0, 0.0]], dtype=torch.float64)
    features = torch.cat([base, base])  # every point has an exact duplicate
    graph = knn_graph(features, 1)
    rows = as_rows(graph)
    for i in range(6):
        assert list(rows[i]) == [(i + 3) % 6]
        assert rows[i][(i + 3) % 6] == pytest.approx(1.0)


def test_weights_formula():
    features = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]], dtype=torch.float64)
    graph = knn_graph(features, 1, sigma=0.5)
    # |x - y|^2 = 9, d = 3: exp(-9 / (2 * 0.25 * 3))
    torch.testing.assert_close(graph.values(), torch.full((2,), np.exp(-6.0),
                                                          dtype=torch.float64))


def test_fewer_samples_than_neighbours():
    features = torch.randn(5, 4)
    graph = knn_graph(features, 20)
    assert graph._nnz() == 5 * 4
    rows, cols = graph.indices()
    assert (rows != cols).all()
    single = knn_graph(torch.randn(1, 4), 20)
    assert single.shape == (1, 1) and single._nnz() == 0 and single.dtype == torch.float32


@pytest.mark.parametrize(
    "features, kwargs, match",
    [
        (torch.zeros(5), {}, "2-D"),
        (torch.zeros(5, 0), {}, "at least one column"),
        (torch.zeros(5, 2, dtype=torch.long), {}, "floating-point"),
        (torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), {}, "NaN"),
        (torch.zeros(5, 2), dict(n_neighbors=0), "n_neighbors"),
        (torch.zeros(5, 2), dict(n_neighbors=2.0), "n_neighbors"),
        (torch.zeros(5, 2), dict(sigma=0.0), "sigma"),
        (torch.zeros(5, 2), dict(chunk_size=0), "chunk_size"),
    ],
)
def test_invalid_arguments(features, kwargs, match):
    with pytest.raises(ValueError, match=match):
        knn_graph(features, **kwargs)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    features = torch.randn(500, 16, dtype=torch.float64)
    graph_cpu = knn_graph(features, 10, chunk_size=128)
    graph_gpu = knn_graph(features.cuda(), 10, chunk_size=128)
    assert graph_gpu.is_cuda
    assert torch.equal(graph_gpu.indices().cpu(), graph_cpu.indices())
    torch.testing.assert_close(graph_gpu.values().cpu(), graph_cpu.values())


# --------------------------------------------------------------------------- approximate
needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None,
                                 reason="needs faiss (the scale extra)")


def clustered(n=4000, d=64, n_clusters=12, seed=0, dtype=np.float32):
    """Long-tailed clusters of low intrinsic dimension (8-d latent + noise)."""
    rng = np.random.default_rng(seed)
    sizes = np.maximum(1, (n / np.arange(1, n_clusters + 1) / np.sum(
        1 / np.arange(1, n_clusters + 1))).astype(int))
    sizes[0] += n - sizes.sum()
    parts = [rng.normal(size=d) * 2 + rng.normal(size=(s, 8)) @ rng.normal(size=(8, d)) * 0.5
             + rng.normal(scale=0.1, size=(s, d)) for s in sizes]
    return torch.from_numpy(np.concatenate(parts)[rng.permutation(n)].astype(dtype))


def neighbour_sets(graph):
    rows, cols = graph.indices().tolist()
    out = [set() for _ in range(graph.shape[0])]
    for i, j in zip(rows, cols):
        out[i].add(j)
    return out


@needs_faiss
@pytest.mark.parametrize("n_neighbors", [10, 20])
def test_approximate_recall_against_exact(n_neighbors):
    features = clustered()
    approx = knn_graph(features, n_neighbors, method="approximate", random_state=0)
    exact = knn_graph(features, n_neighbors, method="exact")
    hits = sum(len(a & b) for a, b in zip(neighbour_sets(approx), neighbour_sets(exact)))
    assert hits / (features.shape[0] * n_neighbors) >= 0.9


@needs_faiss
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_approximate_format_and_weights(dtype):
    features = clustered(n=1500, d=16, dtype=dtype)
    n, d, sigma = features.shape[0], features.shape[1], 1.5
    graph = knn_graph(features, 7, sigma=sigma, method="approximate", random_state=3)
    assert graph.is_sparse and graph.is_coalesced() and graph.shape == (n, n)
    assert graph.dtype == features.dtype and graph.device == features.device
    rows, cols = graph.indices()
    assert (rows != cols).all()
    assert torch.bincount(rows, minlength=n).eq(7).all()
    sq = ((features[rows].double() - features[cols].double()) ** 2).sum(dim=1)
    expected = torch.exp(-sq / (2 * sigma**2 * d)).to(features.dtype)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    torch.testing.assert_close(graph.values(), expected, rtol=rtol, atol=1e-7)


@needs_faiss
def test_approximate_duplicates_and_few_samples():
    base = clustered(n=300, d=8)
    graph = knn_graph(torch.cat([base, base]), 5, method="approximate", random_state=0)
    rows, cols = graph.indices()
    assert (rows != cols).all() and torch.bincount(rows, minlength=600).eq(5).all()
    small = knn_graph(torch.randn(5, 4), 20, method="approximate", random_state=0)
    assert small._nnz() == 5 * 4 and (small.indices()[0] != small.indices()[1]).all()
    single = knn_graph(torch.randn(1, 4), 20, method="approximate", random_state=0)
    assert single.shape == (1, 1) and single._nnz() == 0


@needs_faiss
def test_approximate_fills_short_rows_exactly(monkeypatch):
    # one probed list of about 40 points cannot give 60 neighbours: exact fallback
    monkeypatch.setattr(_graph, "_N_PROBE", 1)
    features = clustered(n=400, d=8)
    graph = knn_graph(features, 60, method="approximate", random_state=0)
    rows, cols = graph.indices()
    assert (rows != cols).all() and (cols >= 0).all()
    assert torch.bincount(rows, minlength=400).eq(60).all()


@needs_faiss
def test_approximate_is_deterministic():
    features = clustered(n=3000, d=32)
    first = knn_graph(features, 10, method="approximate", random_state=7)
    second = knn_graph(features, 10, method="approximate", random_state=7)
    assert torch.equal(first.indices(), second.indices())
    assert torch.equal(first.values(), second.values())
    rng_a = knn_graph(features, 10, method="approximate",
                      random_state=np.random.RandomState(1))
    rng_b = knn_graph(features, 10, method="approximate",
                      random_state=np.random.RandomState(1))
    assert torch.equal(rng_a.indices(), rng_b.indices())


def test_auto_is_exact_below_the_threshold(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("approximate path used")

    monkeypatch.setattr(_graph, "_approximate_neighbours", fail)
    features = clustered(n=500, d=8)
    assert _graph.AUTO_EXACT_MAX_SAMPLES >= 10_000
    auto = knn_graph(features, 5)
    assert torch.equal(auto.indices(), knn_graph(features, 5, method="exact").indices())
    knn_graph(torch.randn(3, 2), 5, method="auto")  # tiny input


def test_auto_above_the_threshold(monkeypatch):
    calls = []
    real = _graph._approximate_neighbours

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(_graph, "_approximate_neighbours", spy)
    monkeypatch.setattr(_graph, "AUTO_EXACT_MAX_SAMPLES", 100)
    features = clustered(n=500, d=8)
    if importlib.util.find_spec("faiss") is not None:
        knn_graph(features, 5, random_state=0)
        assert calls == [(500, 8)]
    monkeypatch.setitem(sys.modules, "faiss", None)  # not installed: auto falls back to exact
    calls.clear()
    graph = knn_graph(features, 5)
    assert calls == []
    assert torch.equal(graph.indices(), knn_graph(features, 5, method="exact").indices())


def test_approximate_without_faiss_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    with pytest.raises(ImportError, match=r"skclust_ot\[scale\].*faiss-cpu"):
        knn_graph(torch.randn(50, 3), 5, method="approximate")


@pytest.mark.parametrize("kwargs, match", [
    (dict(method="annoy"), "method"),
    (dict(method="approximate", random_state=-1), "random_state"),
    (dict(method="approximate", random_state=1.5), "random_state"),
])
def test_invalid_method_and_random_state(kwargs, match):
    if kwargs.get("method") == "approximate" and importlib.util.find_spec("faiss") is None:
        pytest.skip("needs faiss (the scale extra)")
    with pytest.raises(ValueError, match=match):
        knn_graph(torch.randn(20, 3), 5, **kwargs)
