"""Property-based (hypothesis) tests of the public OT solvers ``p2ot`` and ``sp2ot``.

Shapes, logit scales, epsilon, kl_weight, rho, dtype and method are all drawn
at random; the properties are the solver's documented contract:

* the plan is finite, non-negative, of the input's shape, dtype and device;
* the reported marginal errors (``row_error``, ``mass_error``,
  ``virtual_error``, ``column_mass``) agree with the returned plan and with
  the virtual column rebuilt from ``log["potentials"]``;
* a converged solve meets ``tol`` and says nothing; a solve that stops early
  says ``converged=False`` *and* emits a ``ConvergenceWarning``.

Every property runs with ``derandomize=True`` so CI sees the same examples on
every run. The number of examples each property ran is printed at the end of
the module (see ``docs/reliability.md`` for the table).
"""

import math
import warnings
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from skclust_ot.ot import ConvergenceWarning, cost_from_logits, knn_graph, p2ot, sp2ot

# examples per property; kept small enough that the module runs in ~30 s on a
# loaded 2-core machine (see docs/reliability.md)
P2OT_EXAMPLES = 600
HARD_EXAMPLES = 200
NONCONVERGED_EXAMPLES = 100
SP2OT_EXAMPLES = 100
MAX_CELLS = 200_000  # N * K

COUNTS = Counter()

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    line = "hypothesis examples run in test_ot_properties: " + ", ".join(
        f"{name}={count}" for name, count in sorted(COUNTS.items()))
    if reporter is not None:
        reporter.write_line("\n" + line)


def log_uniform(low, high):
    return st.floats(math.log10(low), math.log10(high)).map(lambda e: 10.0 ** e)


@st.composite
def problems(draw, max_n=400, max_k=200):
    n_samples = draw(st.integers(1, max_n))
    n_clusters = draw(st.integers(1, max(1, min(max_k, MAX_CELLS // n_samples))))
    # from perfectly flat logits (every cost log K) to extremely peaked ones
    scale = draw(sometimes(0.0, log_uniform(1e-2, 100.0), one_in=8))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n_samples, n_clusters, generator=gen, dtype=torch.float64)
    cost = cost_from_logits(logits).to(dtype)
    return cost


def sometimes(special, general, one_in=5):
    """``special`` for about one draw in ``one_in``, else ``general``.

    (``st.one_of(st.just(x), ...)`` would give the constant most of the time
    under ``derandomize=True``, which prefers the simplest branch.)
    """
    return st.tuples(st.integers(0, one_in - 1), general).map(
        lambda pair: special if pair[0] == one_in - 1 else pair[1])


solver_params = dict(
    rho=sometimes(1.0, st.floats(0.01, 1.0)),
    epsilon=log_uniform(0.01, 10.0),
    kl_weight=sometimes(math.inf, log_uniform(0.01, 1e3)),
    method=st.sampled_from(["auto", "scaling", "log"]),
)


def solve_recording(fn, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan, log = fn(*args, **kwargs)
    conv = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    return plan, log, conv


def slack_for(dtype, n_samples, n_clusters):
    """Rounding allowance when re-summing a plan stored in ``dtype``."""
    eps = torch.finfo(dtype).eps
    return 8 * eps * math.sqrt(n_samples * n_clusters + 1) + 1e-12


def check_plan_contract(cost, plan, log, conv, *, rho, epsilon, tol):
    n_samples, n_clusters = cost.shape
    # shape, dtype, device, finiteness, sign
    assert plan.shape == cost.shape
    assert plan.dtype == cost.dtype
    assert plan.device == cost.device
    assert not plan.requires_grad
    assert torch.isfinite(plan).all(), "plan has NaN/inf"
    assert (plan >= 0).all(), "plan has negative entries"
    # log keys and types
    for key in ("n_iter", "converged", "row_error", "virtual_error", "mass_error",
                "column_mass", "potentials", "method", "status"):
        assert key in log, key
    assert log["status"] in ("converged", "max_iter", "numerical")
    assert log["method"] in ("scaling", "log", "scaling+log")
    assert log["converged"] == (log["status"] == "converged")
    for key in ("row_error", "virtual_error", "mass_error"):
        assert math.isfinite(log[key]) and log[key] >= 0, (key, log[key])

    # a non-converged solve says so, loudly; a converged one is silent
    if log["converged"]:
        assert not conv, [str(w.message) for w in conv]
    else:
        assert conv, f"status={log['status']} but no ConvergenceWarning"

    slack = slack_for(cost.dtype, n_samples, n_clusters)
    plan64 = plan.double()
    rows = plan64.sum(dim=1)
    cols = plan64.sum(dim=0)
    mass = rows.sum().item()
    alpha = 1.0 / n_samples

    # column_mass is the plan's column sums (float64, length K)
    column_mass = log["column_mass"]
    assert column_mass.shape == (n_clusters,)
    assert column_mass.dtype == torch.float64
    torch.testing.assert_close(column_mass, cols, rtol=0, atol=slack * max(rho, 1e-300))
    # mass_error is |total real mass - rho|
    assert abs(abs(mass - rho) - log["mass_error"]) <= slack

    # the virtual column, rebuilt from the reported potentials
    f, g = log["potentials"]
    assert f.shape == (n_samples,) and g.shape == (n_clusters + 1,)
    assert torch.isfinite(f).all() and torch.isfinite(g[:n_clusters]).all()
    if rho == 1.0:
        assert g[n_clusters].item() == -math.inf
        assert log["virtual_error"] == 0.0
        virtual = torch.zeros(n_samples, dtype=torch.float64)
    else:
        virtual = torch.exp((f.double() + g[n_clusters].double()) / epsilon)
        assert torch.isfinite(virtual).all()
        # the virtual mass is 1 - rho within the reported virtual_error (the
        # potentials are rounded to the input dtype, hence a relative slack)
        vslack = 64 * torch.finfo(cost.dtype).eps * (1.0 + abs(g[n_clusters].item()) / epsilon
                                                    + f.abs().max().item() / epsilon)
        assert abs(virtual.sum().item() - (1.0 - rho)) <= log["virtual_error"] + vslack * (
            1.0 - rho) + slack

    # rows: real part plus virtual part sum to 1/N within row_error; since the
    # virtual part is >= 0, the real row sums exceed 1/N by at most row_error
    over = (rows - alpha).clamp(min=0).sum().item()
    assert over <= log["row_error"] + slack
    # total mass conservation: (real - rho) + (virtual - (1 - rho)) is bounded
    # by the L1 row error
    signed = (mass - rho) + (virtual.sum().item() - (1.0 - rho))
    if rho == 1.0:
        assert abs(signed) <= log["row_error"] + slack
    if log["converged"]:
        # the stopping test saw last_error <= tol; row_error is recomputed from
        # the returned plan and may differ from it by rounding of the dtype
        assert log["row_error"] <= tol + slack + 1e-3 * tol
        assert (rows <= alpha + tol + slack).all()


@settings(max_examples=P2OT_EXAMPLES, **SETTINGS)
@given(cost=problems(), **solver_params)
def test_p2ot_contract_on_random_problems(cost, rho, epsilon, kl_weight, method):
    COUNTS["p2ot_contract"] += 1
    tol = 1e-6
    plan, log, conv = solve_recording(p2ot, cost, rho, epsilon=epsilon, kl_weight=kl_weight,
                                      max_iter=300, tol=tol, method=method)
    COUNTS["p2ot_contract_converged" if log["converged"] else "p2ot_contract_not_converged"] += 1
    check_plan_contract(cost, plan, log, conv, rho=rho, epsilon=epsilon, tol=tol)


@st.composite
def hard_problems(draw):
    """The corners: peaked logits (x30..x100), tiny epsilon, float32, tiny or full rho."""
    n_samples = draw(st.integers(1, 400))
    n_clusters = draw(st.integers(1, max(1, min(200, MAX_CELLS // n_samples))))
    scale = draw(log_uniform(30.0, 100.0))
    dtype = draw(sometimes(torch.float64, st.just(torch.float32), one_in=3))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    logits = scale * torch.randn(n_samples, n_clusters, generator=gen, dtype=torch.float64)
    return cost_from_logits(logits).to(dtype)


@settings(max_examples=HARD_EXAMPLES, **SETTINGS)
@given(
    cost=hard_problems(),
    rho=st.one_of(st.floats(0.01, 0.05), st.floats(0.95, 1.0)),
    epsilon=log_uniform(0.01, 0.05),
    kl_weight=st.one_of(log_uniform(0.01, 0.1), log_uniform(100.0, 1e3), st.just(math.inf)),
    method=st.sampled_from(["scaling", "auto", "log"]),
)
def test_p2ot_contract_in_hard_corners(cost, rho, epsilon, kl_weight, method):
    COUNTS["p2ot_hard"] += 1
    tol = 1e-6
    plan, log, conv = solve_recording(p2ot, cost, rho, epsilon=epsilon, kl_weight=kl_weight,
                                      max_iter=300, tol=tol, method=method)
    COUNTS["p2ot_hard_converged" if log["converged"] else "p2ot_hard_not_converged"] += 1
    check_plan_contract(cost, plan, log, conv, rho=rho, epsilon=epsilon, tol=tol)


@settings(max_examples=NONCONVERGED_EXAMPLES, **SETTINGS)
@given(cost=problems(max_n=200, max_k=50), **solver_params)
def test_p2ot_early_stop_is_reported(cost, rho, epsilon, kl_weight, method):
    """max_iter=1 and tol=0 can never meet the tolerance: the log and a warning say so."""
    COUNTS["p2ot_early_stop"] += 1
    plan, log, conv = solve_recording(p2ot, cost, rho, epsilon=epsilon, kl_weight=kl_weight,
                                      max_iter=1, tol=0.0, method=method)
    if log["row_error"] == 0.0 and log["converged"]:
        # an exactly-solved problem (e.g. N=1 with rho=1) may legitimately converge
        COUNTS["p2ot_early_stop_exact"] += 1
    else:
        assert not log["converged"]
        assert log["status"] in ("max_iter", "numerical")
    check_plan_contract(cost, plan, log, conv, rho=rho, epsilon=epsilon, tol=0.0)


@settings(max_examples=SP2OT_EXAMPLES, **SETTINGS)
@given(
    cost=problems(max_n=120, max_k=20),
    rho=st.floats(0.01, 1.0),
    epsilon=log_uniform(0.01, 10.0),
    kl_weight=sometimes(math.inf, log_uniform(0.01, 1e3)),
    semantic_weight=sometimes(0.0, log_uniform(1e-3, 10.0)),
    n_neighbors=st.integers(1, 12),
    method=st.sampled_from(["auto", "scaling", "log"]),
)
def test_sp2ot_with_random_knn_graph(cost, rho, epsilon, kl_weight, semantic_weight,
                                     n_neighbors, method):
    n_samples = cost.shape[0]
    assume(n_samples >= 2)
    COUNTS["sp2ot"] += 1
    gen = torch.Generator().manual_seed(n_samples * 31 + cost.shape[1])
    features = torch.randn(n_samples, 3, generator=gen, dtype=cost.dtype)
    graph = knn_graph(features, n_neighbors)
    plan, log, conv = solve_recording(
        sp2ot, cost, rho, graph, semantic_weight=semantic_weight, epsilon=epsilon,
        kl_weight=kl_weight, max_iter=200, method=method, mm_max_iter=5)
    assert plan.shape == cost.shape and plan.dtype == cost.dtype
    assert torch.isfinite(plan).all()
    assert (plan >= 0).all()
    assert all(math.isfinite(v) for v in log["objective"])
    assert (plan.double().sum(dim=1) <= 1.0 / n_samples + log["row_error"]
            + slack_for(cost.dtype, *cost.shape)).all()
    if not (log["converged"] and log["mm_converged"]):
        assert conv, "sp2ot stopped early without a ConvergenceWarning"
