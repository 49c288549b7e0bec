"""Tests of the SP²OT majorization–minimization solver."""

import math
import warnings

import pytest
import torch

from skclust_ot.ot import ConvergenceWarning, cost_from_logits, knn_graph, p2ot, sp2ot


def two_groups(seed=0, n_samples=200, dtype=torch.float64):
    """Two well-separated groups in feature space, with barely informative logits."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_samples) % 2
    features = torch.randn(n_samples, 8, generator=gen, dtype=torch.float64)
    features[:, 0] += 6.0 * (2 * labels - 1)
    logits = torch.randn(n_samples, 2, generator=gen, dtype=torch.float64)
    logits[torch.arange(n_samples), labels] += 0.5
    return features.to(dtype), cost_from_logits(logits).to(dtype), labels


def edge_agreement(plan, graph):
    """Share of the graph weight whose two endpoints have the same argmax cluster."""
    rows, cols = graph.indices()
    weights = graph.values()
    labels = plan.argmax(dim=1)
    same = (labels[rows] == labels[cols]).to(weights.dtype)
    return ((weights * same).sum() / weights.sum()).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("semantic_weight, rho", [(0.0, 0.4), (0.2, 1.0)])
def test_reduces_to_p2ot(dtype, semantic_weight, rho):
    features, cost, _ = two_groups(dtype=dtype)
    graph = knn_graph(features, 10)
    plan, log = sp2ot(cost, rho, graph, semantic_weight=semantic_weight)
    expected, expected_log = p2ot(cost, rho)
    assert torch.equal(plan, expected)
    assert log["mm_iter"] == 0 and len(log["objective"]) == 1
    assert log["p2ot_iters"] == expected_log["n_iter"] == log["n_iter"]
    for key in ("converged", "method", "row_error", "virtual_error", "mass_error"):
        assert log[key] == expected_log[key]


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.9])
def test_objective_is_non_increasing(rho):
    features, cost, _ = two_groups()
    graph = knn_graph(features, 10)
    _, log = sp2ot(cost, rho, graph, tol=1e-10, max_iter=10000, mm_tol=1e-10)
    objective = log["objective"]
    assert log["mm_iter"] >= 2 and len(objective) == log["mm_iter"] + 1
    assert all(isinstance(value, float) for value in objective)
    steps = [b - a for a, b in zip(objective, objective[1:])]
    assert max(steps) <= 1e-9
    assert objective[-1] < objective[0]
    assert log["mm_converged"] and log["mm_damped"] == 0
    assert log["p2ot_iters"] >= log["n_iter"] + log["mm_iter"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_semantic_term_makes_neighbours_agree(dtype):
    features, cost, labels = two_groups(dtype=dtype)
    graph = knn_graph(features, 10)
    rho = 0.5
    plan_p2ot, _ = p2ot(cost, rho)
    plan_sp2ot, log = sp2ot(cost, rho, graph)
    assert log["converged"] and log["mm_converged"]
    assert edge_agreement(plan_sp2ot, graph) > edge_agreement(plan_p2ot, graph) + 0.15

    def accuracy(plan):
        weight = plan.double().sum(dim=1)
        hit = (plan.argmax(dim=1) == labels).double()
        return ((weight * hit).sum() / weight.sum()).item()

    assert accuracy(plan_sp2ot) > 0.95 > accuracy(plan_p2ot)
    # still a valid P²OT plan
    n_samples = cost.shape[0]
    assert (plan_sp2ot.double().sum(dim=1) <= 1 / n_samples + 1e-6).all()
    assert abs(plan_sp2ot.double().sum().item() - rho) < 1e-5


def test_strong_weight_is_damped_and_returns_the_best_plan():
    # at this weight the linearization does not majorize: plain MM oscillates
    features, cost, _ = two_groups()
    graph = knn_graph(features, 10)
    plan, log = sp2ot(cost, 0.2, graph, semantic_weight=1.0)
    assert log["mm_damped"] >= 1 and log["mm_converged"]
    assert torch.isfinite(plan).all()
    assert abs(plan.sum().item() - 0.2) < 1e-5
    # the objective did go up at least once: the linearization is no majorizer here
    steps = [b - a for a, b in zip(log["objective"], log["objective"][1:])]
    assert max(steps) > 0


def test_graph_is_never_densified(monkeypatch):
    features, cost, _ = two_groups(n_samples=60)
    graph = knn_graph(features, 5)

    def forbidden(*args, **kwargs):
        raise AssertionError("the graph was densified")

    monkeypatch.setattr(torch.Tensor, "to_dense", forbidden)
    plan, log = sp2ot(cost, 0.5, graph)
    assert log["mm_iter"] >= 1
    assert graph.is_sparse


def test_dense_graph_is_rejected():
    features, cost, _ = two_groups(n_samples=30)
    dense = knn_graph(features, 5).to_dense()
    with pytest.raises(ValueError, match="sparse"):
        sp2ot(cost, 0.5, dense)


def test_csr_and_float32_graph_give_the_same_plan():
    features, cost, _ = two_groups(n_samples=80)
    graph = knn_graph(features, 6)
    plan_coo, _ = sp2ot(cost, 0.5, graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "CSR support is in beta"
        csr = graph.to_sparse_csr()
    plan_csr, _ = sp2ot(cost, 0.5, csr)
    plan_f32_graph, _ = sp2ot(cost, 0.5, graph.float())
    torch.testing.assert_close(plan_csr, plan_coo, rtol=0, atol=1e-12)
    torch.testing.assert_close(plan_f32_graph, plan_coo, rtol=0, atol=1e-7)


def test_larger_weight_pulls_harder():
    features, cost, _ = two_groups()
    graph = knn_graph(features, 10)
    agreements = [edge_agreement(sp2ot(cost, 0.5, graph, semantic_weight=w)[0], graph)
                  for w in (0.0, 0.05, 0.2)]
    assert agreements[0] < agreements[1] < agreements[2]


def test_log_contents_and_warm_start():
    features, cost, _ = two_groups(n_samples=100)
    graph = knn_graph(features, 8)
    plan, log = sp2ot(cost, 0.5, graph)
    for key in ("n_iter", "converged", "method", "row_error", "virtual_error", "mass_error",
                "column_mass", "potentials", "mm_iter", "mm_converged", "objective",
                "p2ot_iters"):
        assert key in log
    f, g = log["potentials"]
    assert f.shape == (100,) and g.shape == (3,)
    # the first P²OT solve starts from the given column potentials; MM then
    # retraces its path from that solution, so the answer is the same
    warm_plan, warm = sp2ot(cost, 0.5, graph, warm_start=log["potentials"])
    assert warm["converged"] and warm["mm_converged"]
    torch.testing.assert_close(warm_plan, plan, rtol=0, atol=1e-6 / 100)


def test_mm_non_convergence_warns():
    features, cost, _ = two_groups(n_samples=100)
    graph = knn_graph(features, 8)
    with pytest.warns(ConvergenceWarning, match="majorization"):
        _, log = sp2ot(cost, 0.5, graph, mm_max_iter=1, mm_tol=0.0)
    assert log["mm_iter"] == 1 and not log["mm_converged"]


def test_mm_max_iter_zero_is_p2ot():
    features, cost, _ = two_groups(n_samples=50)
    graph = knn_graph(features, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan, log = sp2ot(cost, 0.5, graph, mm_max_iter=0)
    assert torch.equal(plan, p2ot(cost, 0.5)[0]) and log["mm_iter"] == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(semantic_weight=-0.1), "semantic_weight"),
        (dict(semantic_weight=math.inf), "semantic_weight"),
        (dict(mm_max_iter=-1), "mm_max_iter"),
        (dict(mm_tol=-1.0), "mm_tol"),
        (dict(rho=0.0), "rho"),
        (dict(method="exact"), "method"),
    ],
)
def test_invalid_arguments(kwargs, match):
    features, cost, _ = two_groups(n_samples=20)
    params = dict(rho=0.5, graph=knn_graph(features, 3))
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sp2ot(cost, **params)


def test_graph_shape_must_match_cost():
    features, cost, _ = two_groups(n_samples=20)
    with pytest.raises(ValueError, match="shape"):
        sp2ot(cost, 0.5, knn_graph(features[:10], 3))


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_symmetrized_graph_is_s_plus_s_transpose(layout):
    from skclust_ot.ot._sp2ot import _symmetrized

    features, cost, _ = two_groups(n_samples=70)
    graph = knn_graph(features.float(), 6)
    if layout == "csr":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            graph = graph.to_sparse_csr()
    sym = _symmetrized(graph, cost)
    assert sym.layout == torch.sparse_csr and sym.dtype == cost.dtype
    dense = knn_graph(features.float(), 6).to_dense().to(cost.dtype)
    torch.testing.assert_close(sym.to_dense(), dense + dense.T, rtol=0, atol=0)
