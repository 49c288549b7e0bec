"""Tests of the sparse kNN semantic graph."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from skclust_ot.ot import knn_graph


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
