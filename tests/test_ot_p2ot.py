"""Tests of the P²OT solver: limiting cases against POT, fixed-point equations,
robustness, warm starts, warnings, argument validation and the rho schedule."""

import contextlib
import math
import sys
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from skclust_ot.ot import ConvergenceWarning, cost_from_logits, p2ot, rho_schedule
from skclust_ot.ot._backend import make_backend
from skclust_ot.ot._control import _Acceleration
from skclust_ot.ot._p2ot import _solve
from skclust_ot.ot._problem import _Problem

METHODS = ["scaling", "log"]
DTYPES = [torch.float32, torch.float64]


def random_cost(n_samples, n_clusters, *, scale=3.0, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n_samples, n_clusters, generator=gen, dtype=torch.float64)
    return cost_from_logits(logits).to(dtype)


def plan_from_potentials(cost, potentials, epsilon):
    f, g = potentials
    return torch.exp((f[:, None] + g[None, :-1] - cost) / epsilon)


def virtual_from_potentials(potentials, epsilon):
    f, g = potentials
    return torch.exp((f + g[-1]) / epsilon)


# --------------------------------------------------------------------------- #
# limiting cases against POT
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kl_weight", [0.5, 1.0, 10.0])
def test_rho_one_matches_pot_semi_relaxed(method, kl_weight):
    pot = pytest.importorskip("ot")
    n_samples, n_clusters, epsilon = 60, 7, 0.1
    cost = random_cost(n_samples, n_clusters, seed=1)
    plan, log = p2ot(cost, 1.0, epsilon=epsilon, kl_weight=kl_weight, tol=1e-13,
                     max_iter=20000, method=method)
    assert log["converged"]
    a = np.full(n_samples, 1.0 / n_samples)
    b = np.full(n_clusters, 1.0 / n_clusters)
    with warnings.catch_warnings():
        # POT warns that reg_type="entropy" overwrites the reference measure
        warnings.simplefilter("ignore", UserWarning)
        expected = pot.unbalanced.sinkhorn_unbalanced(
            a, b, cost.numpy(), reg=epsilon, reg_m=(float("inf"), kl_weight),
            reg_type="entropy", numItermax=20000, stopThr=1e-15,
        )
    np.testing.assert_allclose(plan.numpy(), expected, rtol=0, atol=1e-8)
    # no virtual column at rho = 1, and no NaN from log(0)
    assert log["virtual_error"] == 0.0
    assert log["potentials"][1][-1].item() == -math.inf
    assert torch.isfinite(log["potentials"][1][:-1]).all()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rho", [0.2, 0.7])
def test_balanced_matches_pot_sinkhorn_on_augmented_problem(method, rho):
    pot = pytest.importorskip("ot")
    n_samples, n_clusters, epsilon = 50, 6, 0.1
    cost = random_cost(n_samples, n_clusters, seed=2)
    plan, log = p2ot(cost, rho, epsilon=epsilon, kl_weight=math.inf, tol=1e-13,
                     max_iter=20000, method=method)
    assert log["converged"]
    augmented = np.concatenate([cost.numpy(), np.zeros((n_samples, 1))], axis=1)
    alpha = np.full(n_samples, 1.0 / n_samples)
    beta = np.r_[np.full(n_clusters, rho / n_clusters), 1.0 - rho]
    expected = pot.sinkhorn(alpha, beta, augmented, epsilon, numItermax=100000,
                            stopThr=1e-15)
    np.testing.assert_allclose(plan.numpy(), expected[:, :n_clusters], rtol=0, atol=1e-8)
    virtual = virtual_from_potentials(log["potentials"], epsilon)
    np.testing.assert_allclose(virtual.numpy(), expected[:, -1], rtol=0, atol=1e-8)
    np.testing.assert_allclose(log["column_mass"].numpy(), rho / n_clusters, atol=1e-12)


# --------------------------------------------------------------------------- #
# fixed-point equations of the general case
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rho, epsilon, kl_weight", [(0.3, 0.1, 1.0), (0.6, 0.05, 0.3),
                                                      (0.1, 0.2, 5.0)])
def test_fixed_point_conditions(dtype, method, rho, epsilon, kl_weight):
    n_samples, n_clusters = 120, 8
    cost = random_cost(n_samples, n_clusters, seed=3, dtype=dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    plan, log = p2ot(cost, rho, epsilon=epsilon, kl_weight=kl_weight, tol=tol,
                     max_iter=5000, method=method)
    assert log["converged"] and log["method"] == method
    assert plan.dtype == dtype and plan.shape == (n_samples, n_clusters)
    assert (plan >= 0).all()
    atol = 1e-5 if dtype == torch.float32 else 1e-10

    f, g = (p.double() for p in log["potentials"])
    assert f.shape == (n_samples,) and g.shape == (n_clusters + 1,)
    mass = plan.double().sum(dim=0)
    beta = rho / n_clusters
    # b_j = (m_j / beta_j)^(-lambda / eps), i.e. g_j = -lambda log(m_j / beta_j)
    np.testing.assert_allclose(g[:-1].numpy(), (-kl_weight * torch.log(mass / beta)).numpy(),
                               rtol=0, atol=1e3 * atol)
    # the virtual column carries 1 - rho, the rows sum to 1/N
    virtual = virtual_from_potentials((f, g), epsilon)
    assert abs(virtual.sum().item() - (1 - rho)) < atol
    rows = plan.double().sum(dim=1) + virtual
    np.testing.assert_allclose(rows.numpy(), 1.0 / n_samples, rtol=0, atol=atol / n_samples * 10)
    assert (plan.double().sum(dim=1) <= 1.0 / n_samples + atol).all()
    assert abs(plan.double().sum().item() - rho) < 10 * atol
    # the plan is the Gibbs form of the returned potentials
    np.testing.assert_allclose(plan.double().numpy(),
                               plan_from_potentials(cost.double(), (f, g), epsilon).numpy(),
                               rtol=1e-3 if dtype == torch.float32 else 1e-9, atol=1e-30)
    # the log is consistent with the plan
    np.testing.assert_allclose(log["column_mass"].numpy(), mass.numpy(), atol=atol)
    assert log["row_error"] < (3e-6 if dtype == torch.float32 else 1e-11)
    assert log["mass_error"] < 10 * atol and log["virtual_error"] < atol


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kl_weight", [1.0, math.inf])
@pytest.mark.parametrize("rho", [0.25, 1.0])
def test_scaling_and_log_give_the_same_plan(dtype, kl_weight, rho):
    cost = random_cost(90, 5, seed=4, dtype=dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-10
    kwargs = dict(epsilon=0.1, kl_weight=kl_weight, tol=tol, max_iter=5000)
    plan_scaling, log_scaling = p2ot(cost, rho, method="scaling", **kwargs)
    plan_log, log_log = p2ot(cost, rho, method="log", **kwargs)
    assert log_scaling["method"] == "scaling" and log_log["method"] == "log"
    atol = 1e-5 / 90 if dtype == torch.float32 else 1e-8 / 90
    torch.testing.assert_close(plan_scaling, plan_log, rtol=0, atol=atol)


def test_auto_uses_scaling_and_converges():
    cost = random_cost(100, 10, seed=5)
    plan, log = p2ot(cost, 0.4)
    assert log["method"] == "scaling" and log["converged"]
    assert isinstance(log["n_iter"], int) and isinstance(log["converged"], bool)
    for key in ("row_error", "virtual_error", "mass_error"):
        assert isinstance(log[key], float)


# --------------------------------------------------------------------------- #
# robustness
# --------------------------------------------------------------------------- #
def dead_column_cost(dtype):
    gen = torch.Generator().manual_seed(6)
    proba = torch.softmax(8 * torch.randn(300, 10, generator=gen, dtype=torch.float64), dim=1)
    proba = proba.clamp_min(1e-30)
    proba[:, 3] = 1e-30  # a whole dead cluster
    proba = proba / proba.sum(dim=1, keepdim=True)
    return (-proba.log()).to(dtype)


def negative_cost(dtype):
    return dead_column_cost(torch.float64).sub(30.0).to(dtype)


def diffuse_cost(dtype):
    return random_cost(200, 1000, scale=0.1, seed=7, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["auto", "log"])
@pytest.mark.parametrize("make_cost", [dead_column_cost, negative_cost, diffuse_cost])
@pytest.mark.parametrize("epsilon", [0.1, 0.01])
def test_no_nan_in_hard_regimes(dtype, method, make_cost, epsilon):
    cost = make_cost(dtype)
    rho = 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        plan, log = p2ot(cost, rho, epsilon=epsilon, method=method, max_iter=300)
    f, g = log["potentials"]
    assert torch.isfinite(plan).all() and torch.isfinite(f).all() and torch.isfinite(g).all()
    assert plan.dtype == dtype
    # float32 reaches tol = 1e-6 too: the potentials are kept centred
    assert log["converged"] and log["row_error"] < 2e-6
    assert abs(plan.double().sum().item() - rho) < 2e-6
    assert log["virtual_error"] < 2e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_dead_column_gets_no_mass(dtype):
    plan, log = p2ot(dead_column_cost(dtype), 0.5, epsilon=0.01)
    assert log["converged"]
    assert log["column_mass"][3].item() < 1e-20
    assert torch.isfinite(log["potentials"][1]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_negative_cost_shift_changes_selection_not_validity(dtype):
    # a constant shift of the real costs makes the real clusters cheaper than the
    # virtual one; the plan stays valid and the rows stay capped at 1/N
    cost = random_cost(150, 4, seed=8, dtype=dtype)
    plan, log = p2ot(cost - 50.0, 0.5, epsilon=0.05)
    assert log["converged"]
    assert (plan.double().sum(dim=1) <= 1 / 150 + 1e-6).all()
    assert abs(plan.double().sum().item() - 0.5) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
def test_fallback_to_log_when_a_column_underflows(dtype):
    cost = random_cost(200, 6, seed=9)
    cost[:, 2] = 1000.0  # column mass far below the smallest float
    cost = cost.to(dtype)
    plan, log = p2ot(cost, 0.3, epsilon=0.1, method="auto")
    assert log["method"] == "scaling+log" and log["converged"]
    assert torch.isfinite(plan).all()
    assert log["column_mass"][2].item() == 0.0
    reference, _ = p2ot(cost, 0.3, epsilon=0.1, method="log")
    torch.testing.assert_close(plan, reference, rtol=0, atol=1e-6 / 200)
    with pytest.warns(UserWarning, match="log domain"):
        _, log_scaling = p2ot(cost, 0.3, epsilon=0.1, method="scaling")
    assert log_scaling["method"] == "scaling+log"


def test_numerical_error_restores_last_finite_iterate(monkeypatch):
    cost = random_cost(40, 3, seed=10)
    original = _Problem.column_update
    calls = {"n": 0}

    def poisoned(self, *args):
        calls["n"] += 1
        v, v_virtual = original(self, *args)
        if calls["n"] >= 3:
            v = v * math.nan
        return v, v_virtual

    monkeypatch.setattr(_Problem, "column_update", poisoned)
    with pytest.warns(ConvergenceWarning, match="numerical errors"):
        plan, log = p2ot(cost, 0.5, method="log")
    assert not log["converged"] and log["n_iter"] == 2
    assert torch.isfinite(plan).all()
    assert torch.isfinite(log["potentials"][0]).all()


# --------------------------------------------------------------------------- #
# warm start and non-convergence
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["auto", "log"])
@pytest.mark.parametrize("rho", [0.3, 1.0])
def test_warm_start_converges_immediately_to_the_same_plan(dtype, method, rho):
    cost = random_cost(150, 6, seed=11, dtype=dtype)
    plan, log = p2ot(cost, rho, epsilon=0.05, method=method)
    assert log["n_iter"] > 5
    plan2, log2 = p2ot(cost, rho, epsilon=0.05, method=method, warm_start=log["potentials"])
    assert log2["converged"] and log2["n_iter"] <= 3
    torch.testing.assert_close(plan2, plan, rtol=0, atol=2e-6 / 150)
    # only the column potentials are needed
    _, log3 = p2ot(cost, rho, epsilon=0.05, method=method,
                   warm_start=(None, log["potentials"][1]))
    assert log3["n_iter"] <= 3


def test_warm_start_from_nearby_problem_saves_iterations():
    # With Anderson mixing a cold solve of these problems takes 10-13
    # iterations, and a start 2-3x closer saves 0-2 of them: on each problem
    # the warm start is closer (smaller first error), and over five problems
    # it needs fewer iterations in total
    cold_total = warm_total = 0
    for seed in range(12, 22, 2):
        cost = random_cost(200, 8, seed=seed)
        _, log = p2ot(cost, 0.3)
        perturbed = cost + 0.01 * random_cost(200, 8, seed=seed + 1)
        _, cold = p2ot(perturbed, 0.32)
        _, warm = p2ot(perturbed, 0.32, warm_start=log["potentials"])
        assert cold["converged"] and warm["converged"]
        firsts = [solve_core(perturbed, 0.32, 0.1, 1.0, 1, 0.0, "auto", start)[2]["last_error"]
                  for start in (None, log["potentials"])]
        assert firsts[1] < 0.5 * firsts[0]
        cold_total += cold["n_iter"]
        warm_total += warm["n_iter"]
    assert warm_total < cold_total


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["auto", "log"])
@pytest.mark.parametrize("backend", [None, "torch"])
def test_out_receives_the_plan_without_another_array(dtype, method, backend):
    cost = random_cost(120, 6, seed=30, dtype=dtype)
    cost_before = cost.clone()
    plan, _, log = solve_core(cost, 0.4, 0.1, 1.0, 1000, 1e-6, method, None, backend=backend)
    out = torch.full_like(cost, math.nan)  # contents on entry are ignored
    got, _, log_out = solve_core(cost, 0.4, 0.1, 1.0, 1000, 1e-6, method, None,
                                 backend=backend, out=out)
    assert got is out
    torch.testing.assert_close(out, plan, rtol=0, atol=0)
    assert log_out["n_iter"] == log["n_iter"]
    torch.testing.assert_close(cost, cost_before, rtol=0, atol=0)
    # the public entry point, reusing the buffer for a second problem
    other = random_cost(120, 6, seed=31, dtype=dtype)
    again, _ = p2ot(other, 0.4, method=method, out=out)
    reference, _ = p2ot(other, 0.4, method=method)
    assert again is out
    torch.testing.assert_close(again, reference, rtol=0, atol=0)


def test_out_is_validated():
    cost = random_cost(20, 4, seed=32)
    bad = [
        (torch.empty(20, 5, dtype=cost.dtype), ValueError, "shape"),
        (torch.empty(20, 4, dtype=torch.float32), ValueError, "dtype"),
        (torch.empty(4, 20, dtype=cost.dtype).T, ValueError, "contiguous"),
        (cost, ValueError, "share memory"),
        (cost.view(-1).view(20, 4), ValueError, "share memory"),
        (cost.numpy().copy(), TypeError, "torch.Tensor"),
    ]
    for out, error, match in bad:
        with pytest.raises(error, match=match):
            p2ot(cost, 0.5, out=out)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            p2ot(cost, 0.5, out=torch.empty(20, 4, dtype=cost.dtype, device="cuda"))


def test_out_is_left_untouched_by_an_invalid_warm_start():
    cost = random_cost(20, 4, seed=33)
    out = torch.full_like(cost, 7.0)
    with pytest.raises(ValueError, match="warm_start"):
        p2ot(cost, 0.5, warm_start=(None, torch.zeros(3, dtype=cost.dtype)), out=out)
    with pytest.raises(ValueError, match="non-finite"):
        p2ot(cost, 0.5, warm_start=(None, torch.full((5,), math.nan, dtype=cost.dtype)),
             out=out)
    assert bool((out == 7.0).all())


def test_out_overlap_is_judged_on_the_bytes_used():
    # views of one buffer: rejected when their elements overlap, accepted when disjoint
    buffer = torch.from_numpy(random_cost(61, 4, seed=34).numpy())
    cost = buffer[:30]
    with pytest.raises(ValueError, match="share memory"):
        p2ot(cost, 0.3, out=buffer[1:31])
    disjoint = buffer[31:61]
    plan, _ = p2ot(cost, 0.3, out=disjoint)
    reference, _ = p2ot(cost.clone(), 0.3)
    assert plan is disjoint
    torch.testing.assert_close(plan, reference, rtol=0, atol=0)
    with pytest.raises(ValueError, match="grad"):
        p2ot(cost, 0.3, out=torch.zeros_like(cost, requires_grad=True))


def test_warm_start_from_rho_one_potentials():
    cost = random_cost(80, 4, seed=14)
    _, log = p2ot(cost, 1.0)
    assert log["potentials"][1][-1].item() == -math.inf
    plan, log2 = p2ot(cost, 0.5, warm_start=log["potentials"])
    reference, _ = p2ot(cost, 0.5)
    assert log2["converged"]
    torch.testing.assert_close(plan, reference, rtol=0, atol=1e-7)


@pytest.mark.parametrize("method", ["auto", "scaling", "log"])
def test_non_convergence_warns(method):
    cost = random_cost(100, 5, seed=15)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        plan, log = p2ot(cost, 0.4, epsilon=0.05, max_iter=2, method=method)
    assert log["converged"] is False and log["n_iter"] == 2
    assert torch.isfinite(plan).all()
    # the last iterate ends with a column update: the virtual mass is exact
    assert log["virtual_error"] < 1e-12


# --------------------------------------------------------------------------- #
# dtype / device and validation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("dtype", DTYPES)
def test_outputs_follow_input_dtype(dtype):
    cost = random_cost(30, 3, dtype=dtype)
    plan, log = p2ot(cost, 0.5)
    assert plan.dtype == dtype and plan.device == cost.device
    assert all(p.dtype == dtype for p in log["potentials"])
    assert log["column_mass"].shape == (3,)


def test_no_gradient_tracking():
    logits = torch.randn(20, 3, dtype=torch.float64, requires_grad=True)
    plan, log = p2ot(cost_from_logits(logits), 0.5)
    assert not plan.requires_grad and not log["potentials"][0].requires_grad


def test_cost_from_logits():
    logits = torch.randn(5, 4, dtype=torch.float64)
    cost = cost_from_logits(logits)
    torch.testing.assert_close(cost, -torch.log_softmax(logits, dim=1))
    assert cost.dtype == torch.float64
    # huge logit gaps give large but finite costs
    assert torch.isfinite(cost_from_logits(torch.tensor([[1e4, -1e4]]))).all()
    with pytest.raises(ValueError, match="2-D"):
        cost_from_logits(torch.zeros(3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rho=0.0), "rho"),
        (dict(rho=1.5), "rho"),
        (dict(rho=math.nan), "rho"),
        (dict(epsilon=0.0), "epsilon"),
        (dict(epsilon=-1.0), "epsilon"),
        (dict(kl_weight=0.0), "kl_weight"),
        (dict(kl_weight=-math.inf), "kl_weight"),
        (dict(max_iter=0), "max_iter"),
        (dict(max_iter=2.5), "max_iter"),
        (dict(tol=-1.0), "tol"),
        (dict(method="sinkhorn"), "method"),
        (dict(warm_start=torch.zeros(3)), "warm_start"),
        (dict(warm_start=(None, torch.zeros(3))), "n_clusters \\+ 1"),
    ],
)
def test_invalid_arguments(kwargs, match):
    params = dict(rho=0.5)
    params.update(kwargs)
    with pytest.raises(ValueError, match=match):
        p2ot(random_cost(10, 3), **params)


@pytest.mark.parametrize(
    "cost, match",
    [
        (torch.zeros(5), "2-D"),
        (torch.zeros(0, 3), "non-empty"),
        (torch.zeros(4, 3, dtype=torch.long), "floating-point"),
        (torch.tensor([[0.0, math.inf]]), "NaN or inf"),
        (torch.tensor([[0.0, math.nan]]), "NaN or inf"),
    ],
)
def test_invalid_cost(cost, match):
    with pytest.raises(ValueError, match=match):
        p2ot(cost, 0.5)
    with pytest.raises(TypeError):
        p2ot(np.zeros((3, 2)), 0.5)


# --------------------------------------------------------------------------- #
# property-based check on small random problems
# --------------------------------------------------------------------------- #
@settings(max_examples=25, deadline=None)
@given(
    n_samples=st.integers(1, 30),
    n_clusters=st.integers(1, 6),
    rho=st.floats(0.05, 1.0),
    epsilon=st.floats(0.05, 1.0),
    kl_weight=st.one_of(st.floats(0.1, 10.0), st.just(math.inf)),
    seed=st.integers(0, 1000),
)
def test_constraints_hold_on_random_problems(n_samples, n_clusters, rho, epsilon, kl_weight,
                                             seed):
    cost = random_cost(n_samples, n_clusters, seed=seed)
    plans = []
    for method in METHODS:
        plan, log = p2ot(cost, rho, epsilon=epsilon, kl_weight=kl_weight, tol=1e-10,
                         max_iter=20000, method=method)
        assert log["converged"]
        assert (plan >= 0).all()
        assert (plan.sum(dim=1) <= 1 / n_samples + 1e-9).all()
        assert abs(plan.sum().item() - rho) < 1e-8
        plans.append(plan)
    torch.testing.assert_close(plans[0], plans[1], rtol=0, atol=1e-8)


# --------------------------------------------------------------------------- #
# CUDA
# --------------------------------------------------------------------------- #
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["auto", "log"])
def test_cuda_matches_cpu(dtype, method):
    cost = random_cost(512, 20, seed=16, dtype=dtype)
    plan_cpu, log_cpu = p2ot(cost, 0.3, method=method)
    plan_gpu, log_gpu = p2ot(cost.cuda(), 0.3, method=method)
    assert plan_gpu.is_cuda and plan_gpu.dtype == dtype
    assert log_gpu["potentials"][0].is_cuda and log_gpu["column_mass"].is_cuda
    assert log_gpu["converged"]
    atol = 1e-5 / 512 if dtype == torch.float32 else 1e-10 / 512
    torch.testing.assert_close(plan_gpu.cpu(), plan_cpu, rtol=0, atol=atol)
    # the plan written into a caller's buffer on the device
    out = torch.empty_like(plan_gpu)
    plan_out, _ = p2ot(cost.cuda(), 0.3, method=method, out=out)
    assert plan_out is out
    torch.testing.assert_close(out, plan_gpu, rtol=0, atol=0)


# --------------------------------------------------------------------------- #
# implementation paths: backends, fused sweeps, check schedule, acceleration,
# translation (private switches of the solver core)
# --------------------------------------------------------------------------- #
solve_core = _solve


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", ["auto", "log"])
@pytest.mark.parametrize("rho", [0.3, 1.0])
def test_torch_backend_on_cpu_matches_numpy_backend(dtype, method, rho):
    # the loop that runs on GPUs, exercised on CPU
    cost = random_cost(256, 12, seed=17, dtype=dtype)
    plan_np, _, log_np = solve_core(cost, rho, 0.1, 1.0, 1000, 1e-6, method, None)
    plan_t, _, log_t = solve_core(cost, rho, 0.1, 1.0, 1000, 1e-6, method, None,
                                  backend="torch")
    assert log_t["converged"] and log_t["method"] == log_np["method"]
    assert plan_t.dtype == dtype and log_t["potentials"][1].dtype == dtype
    atol = 1e-5 / 256 if dtype == torch.float32 else 1e-10 / 256
    torch.testing.assert_close(plan_t, plan_np, rtol=0, atol=atol)
    torch.testing.assert_close(log_t["column_mass"], log_np["column_mass"], rtol=0,
                               atol=100 * atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rho", [0.3, 1.0])
def test_fused_sweeps_match_plain_sweeps(dtype, rho):
    cost = random_cost(300, 7, seed=18, dtype=dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    plain, _, log_plain = solve_core(cost, rho, 0.05, 1.0, 5000, tol, "auto", None,
                                     fused=False)
    fused, _, log_fused = solve_core(cost, rho, 0.05, 1.0, 5000, tol, "auto", None, fused=True)
    assert log_fused["converged"] and log_fused["n_iter"] == log_plain["n_iter"]
    atol = 1e-5 / 300 if dtype == torch.float32 else 1e-11 / 300
    torch.testing.assert_close(fused, plain, rtol=0, atol=atol)


@pytest.mark.parametrize("max_gap", [1, 8])
def test_check_schedule_does_not_change_the_answer(max_gap):
    # checking every iteration or every few iterations: same fixed point, and the
    # scaling -> log fallback still happens (its first failure is found and replayed)
    cost = random_cost(200, 6, seed=9)
    cost[:, 2] = 1000.0
    plan, _, log = solve_core(cost, 0.3, 0.1, 1.0, 1000, 1e-12, "auto", None,
                              max_gap=max_gap)
    reference, _, _ = solve_core(cost, 0.3, 0.1, 1.0, 1000, 1e-12, "log", None, max_gap=1)
    assert log["converged"] and log["method"] == "scaling+log"
    torch.testing.assert_close(plan, reference, rtol=0, atol=1e-12)


def test_numerical_error_in_a_fast_window_restores_the_checked_iterate(monkeypatch):
    # NaN appearing between two checks of the scaling path: the window is replayed
    # one checked iteration at a time and the solve continues in the log domain
    from skclust_ot.ot import _backend

    cost = random_cost(400, 5, seed=19)
    calls = {"n": 0}
    real_matvec = _backend.NumpyBackend.matvec

    def flaky(matrix, vector, out):
        calls["n"] += 1
        real_matvec(matrix, vector, out)
        if calls["n"] == 6:  # one poisoned row-sum product, then healthy again
            out[0] = math.nan
        return out

    monkeypatch.setattr(_backend.NumpyBackend, "matvec", staticmethod(flaky))
    plan, _, log = solve_core(cost, 0.4, 0.1, 1.0, 1000, 1e-12, "scaling", None, max_gap=8)
    assert calls["n"] > 6 and torch.isfinite(plan).all() and log["converged"]
    reference, _, _ = solve_core(cost, 0.4, 0.1, 1.0, 1000, 1e-12, "log", None)
    torch.testing.assert_close(plan, reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed, n, k, dtype", [(1, 60, 20, torch.float64),
                                                (1, 300, 5, torch.float32),
                                                (3, 60, 5, torch.float32)])
def test_log_path_replays_a_mixed_step_that_overflows(seed, n, k, dtype):
    # balanced columns at rho = 1: shifting every column potential by one
    # constant leaves the plan unchanged, and an early mixed step can shoot far
    # along that direction; the log path must replay with plain steps (as the
    # scaling path does), not stop at NaN
    gen = torch.Generator().manual_seed(seed)
    cost = cost_from_logits(3 * torch.randn(n, k, generator=gen, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plan, log = p2ot(cost.to(dtype), 1.0, epsilon=0.01, kl_weight=math.inf, method="log",
                         max_iter=3000)
    assert log["status"] != "numerical" and torch.isfinite(plan).all()
    assert log["row_error"] < 1e-3


def test_tol_zero_and_exact_zero_errors_do_not_break_the_acceleration():
    # an exactly zero error at a check used to divide by zero in the prediction
    # of the last (exact) step
    cost = cost_from_logits(torch.randn(50, 5, generator=torch.Generator().manual_seed(0),
                                        dtype=torch.float64))
    with pytest.warns(ConvergenceWarning):
        plan, log = p2ot(cost, 0.3, tol=0.0, max_iter=200)
    assert log["status"] == "max_iter" and log["row_error"] < 1e-12
    acceleration = _Acceleration(make_backend(cost), cost.dtype)
    acceleration.update(1, 0.0, 1e-6)
    acceleration.update(2, 0.0, 1e-6)  # previous error exactly 0
    assert acceleration.exact_next


@pytest.mark.parametrize("rho, kl_weight", [(1.0, 10.0), (0.5, 100.0), (0.5, math.inf)])
def test_acceleration_saves_iterations_and_keeps_the_plan(rho, kl_weight):
    cost = random_cost(400, 10, seed=20)
    kwargs = dict(max_gap=1)
    plain, _, log_plain = solve_core(cost, rho, 0.05, kl_weight, 20000, 1e-13, "scaling",
                                     None, accelerate=False, **kwargs)
    fast, _, log_fast = solve_core(cost, rho, 0.05, kl_weight, 20000, 1e-13, "scaling", None,
                                   **kwargs)
    assert log_plain["converged"] and log_fast["converged"]
    assert log_fast["n_iter"] < 0.7 * log_plain["n_iter"]
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-12)
    # the solve ends with exact steps: the column conditions hold, so the log
    # reports the virtual mass exactly
    assert log_fast["virtual_error"] < 1e-12


@pytest.mark.parametrize("rho", [0.1, 0.5])
def test_translation_step_keeps_the_plan_of_plain_scaling(rho):
    cost = random_cost(150, 5, seed=21)
    plain, _, log_plain = solve_core(cost, rho, 0.1, 1.0, 100000, 1e-13, "scaling", None,
                                     translate=False, accelerate=False)
    fast, _, log_fast = solve_core(cost, rho, 0.1, 1.0, 100000, 1e-13, "scaling", None)
    assert log_plain["converged"] and log_fast["converged"]
    assert 2 * log_fast["n_iter"] < log_plain["n_iter"]
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-14)


def test_invalid_backend():
    with pytest.raises(ValueError, match="backend"):
        solve_core(random_cost(10, 3), 0.5, 0.1, 1.0, 10, 1e-6, "auto", None, backend="jax")
    with pytest.raises(ValueError, match="NumPy backend"):
        solve_core(random_cost(10, 3).half(), 0.5, 0.1, 1.0, 10, 1e-6, "auto", None,
                   backend="numpy")


# --------------------------------------------------------------------------- #
# rho schedule
# --------------------------------------------------------------------------- #
def test_rho_schedule_sigmoid():
    total = 200
    values = [rho_schedule(t, total, rho0=0.1) for t in range(total + 1)]
    assert all(isinstance(v, float) and 0 < v <= 1 for v in values)
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[0] == pytest.approx(0.1 + 0.9 * math.exp(-5))
    assert values[-1] == 1.0
    assert rho_schedule(50, 100, rho0=0.2) == pytest.approx(0.2 + 0.8 * math.exp(-1.25))
    # t is clipped to [0, T]
    assert rho_schedule(-10, total) == values[0]
    assert rho_schedule(10 * total, total) == 1.0


def test_rho_schedule_linear_and_constant():
    assert rho_schedule(0, 10, rho0=0.2, kind="linear") == pytest.approx(0.2)
    assert rho_schedule(5, 10, rho0=0.2, kind="linear") == pytest.approx(0.6)
    assert rho_schedule(10, 10, rho0=0.2, kind="linear") == 1.0
    assert rho_schedule(7, 10, rho0=0.3, kind="constant") == 0.3


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((1, 10), dict(kind="cosine"), "kind"),
        ((1, 0), {}, "total_steps"),
        ((1, 10), dict(rho0=0.0), "rho0"),
        ((1, 10), dict(rho0=1.2), "rho0"),
        ((math.nan, 10), {}, "step"),
    ],
)
def test_rho_schedule_validation(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        rho_schedule(*args, **kwargs)


def test_the_numpy_loop_runs_blas_on_one_thread_and_restores_it(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    import skclust_ot.ot._p2ot as p2ot_mod

    def blas_threads():
        return sorted({lib["num_threads"] for lib in threadpool_info()
                       if lib["user_api"] == "blas"})

    seen = []
    real = p2ot_mod._solve_scaling

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(p2ot_mod, "_solve_scaling", spy)
    cost = -torch.log_softmax(torch.randn(50, 3, generator=torch.Generator().manual_seed(0)), 1)
    import skclust_ot.ot._backend as backend

    class ControlsNothing:  # as a controller built before a BLAS was loaded
        def limit(self, **kwargs):
            return contextlib.nullcontext()

    # a controller older than the last import is rebuilt (an import may load
    # another BLAS); one built since is kept
    monkeypatch.setattr(backend, "_BLAS_CONTROLLER",
                        {"controller": ControlsNothing(), "modules": len(sys.modules) - 1})
    with threadpool_limits(2, user_api="blas"):
        if blas_threads() != [2]:
            pytest.skip("no BLAS library whose thread count threadpoolctl can set")
        p2ot(cost, 0.5)
        assert seen == [[1]]  # inside the loop, every BLAS loaded
        assert blas_threads() == [2]  # the caller's setting, back after the solve
    kept = backend._BLAS_CONTROLLER["controller"]
    p2ot(cost, 0.5)
    assert backend._BLAS_CONTROLLER["controller"] is kept
    # a problem above the size limit (150 entries here) leaves BLAS as it is
    monkeypatch.setattr(backend, "ONE_BLAS_THREAD_MAX_ENTRIES", cost.numel() - 1)
    seen.clear()
    with threadpool_limits(2, user_api="blas"):
        p2ot(cost, 0.5)
    assert seen == [[2]]
