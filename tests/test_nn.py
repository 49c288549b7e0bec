"""Unit tests of the neural-network layer (:mod:`skclust_ot.nn`).

Each class is exercised on its own (tiny modules, stub pseudo-labelers,
short skorch fits), with expectations taken from the documented maths and,
for the pseudo-labels, from the public solvers of :mod:`skclust_ot.ot`
called directly on the same logits.
"""

import copy
import math

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback
from torch import nn

import skclust_ot.nn._pseudo as pseudo_mod
from skclust_ot.nn import (
    BlockSampler,
    ClusterModule,
    CosineHead,
    FeatureViews,
    FullDataPseudoLabels,
    MLPEncoder,
    PaddedShuffleSampler,
    PseudoLabeler,
    PseudoLabelStats,
    RhoScheduler,
    SoftTargetCrossEntropy,
    SP2OTNet,
    Standardize,
)
from skclust_ot.ot import cost_from_logits, knn_graph, p2ot, rho_schedule, sp2ot

K = 4
EPS = 0.1
TIGHT = {"max_iter": 3000, "tol": 1e-10, "method": "log"}


def _logits(n, k=K, seed=0, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, k, generator=gen, dtype=torch.float64)


def _labeler(n, scope="full", memory_size=0, kl_weight=1.0, semantic_weight=0.0, **kw):
    return PseudoLabeler(n, K, scope=scope, memory_size=memory_size, epsilon=EPS,
                         kl_weight=kl_weight, semantic_weight=semantic_weight,
                         solver_kwargs=dict(TIGHT), **kw)


def _direct_p2ot(logits, rho, kl_weight=1.0):
    plan, log = p2ot(cost_from_logits(logits), rho, epsilon=EPS, kl_weight=kl_weight,
                     max_iter=TIGHT["max_iter"], tol=TIGHT["tol"], method="log")
    return plan, log


@pytest.fixture
def record_solver_calls(monkeypatch):
    """Wrap the P²OT solver the labeler calls; record each call's warm start."""
    calls = []
    real = pseudo_mod.p2ot

    def wrapped(cost, rho, **kwargs):
        calls.append({"n": cost.shape[0], "rho": rho, "warm_start": kwargs.get("warm_start")})
        return real(cost, rho, **kwargs)

    monkeypatch.setattr(pseudo_mod, "p2ot", wrapped)
    return calls


# ---------------------------------------------------------------------------
# PseudoLabeler, scope "full"
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kl_weight", [1.0, math.inf])
def test_full_targets_are_rows_of_n_times_p2ot_plan(kl_weight):
    n, rho = 50, 0.4
    z1, z2 = _logits(n, seed=1), _logits(n, seed=2)
    lab = _labeler(n, kl_weight=kl_weight)
    lab.rho = rho
    lab.refresh([z1, z2])
    index = torch.tensor([3, 0, 49, 17, 17])
    t1, t2 = lab.targets(index, z1[index], z2[index])
    for t, z in ((t1, z1), (t2, z2)):
        plan, _ = _direct_p2ot(z, rho, kl_weight)
        assert t.shape == (5, K) and t.dtype == z.dtype
        torch.testing.assert_close(t, n * plan[index], atol=1e-8, rtol=0)
    for full in lab.full_targets:
        assert full.shape == (n, K)
        rows = full.sum(1)
        assert rows.min() >= 0 and rows.max() <= 1 + 1e-6
        assert abs(float(full.sum()) - rho * n) < 1e-5 * n
        if kl_weight == math.inf:  # hard uniform marginal: rho N / K per cluster
            torch.testing.assert_close(full.sum(0), torch.full((K,), rho * n / K,
                                                               dtype=full.dtype),
                                       atol=1e-5, rtol=0)
    # the two views are solved separately
    assert not torch.allclose(lab.full_targets[0], lab.full_targets[1])


def test_full_targets_follow_logits_dtype():
    n = 30
    z = _logits(n, seed=3).float()
    lab = _labeler(n)
    lab.rho = 0.5
    lab.refresh([z, z])
    t1, _ = lab.targets(torch.arange(4), z[:4], z[:4].double())
    assert t1.dtype == torch.float32
    assert lab.targets(torch.arange(4), z[:4], z[:4].double())[1].dtype == torch.float64


def test_full_targets_view_index_reads_the_shown_samples_rows():
    n = 20
    z = _logits(n, seed=4)
    lab = _labeler(n)
    lab.rho = 0.7
    lab.refresh([z, z + 1.0 * _logits(n, seed=5)])
    index = torch.tensor([0, 1, 2])
    partners = torch.tensor([5, 1, 19])
    t1, t2 = lab.targets(index, z[index], z[partners], view_index=[index, partners])
    torch.testing.assert_close(t1, lab.full_targets[0][index])
    torch.testing.assert_close(t2, lab.full_targets[1][partners])


def _block_labeler(feats, n_views, keep):
    """A full-scope labeler whose blocks get 5-NN graphs from ``feats`` (semantic 0.5)."""
    return PseudoLabeler(feats.shape[0], K, scope="full", memory_size=0, epsilon=EPS,
                         kl_weight=1.0, semantic_weight=0.5, graph_features=feats,
                         n_neighbors=5, solver_kwargs={**TIGHT, "mm_max_iter": 5},
                         n_views=n_views, keep_block_graphs=keep)


@pytest.mark.filterwarnings("ignore::skclust_ot.ot.ConvergenceWarning")  # few MM steps
@pytest.mark.parametrize("keep", [True, False])
def test_a_block_refresh_solves_over_the_block_with_its_own_graph(keep, monkeypatch):
    n = 60
    gen = torch.Generator().manual_seed(8)
    feats = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    block = torch.tensor(sorted(torch.randperm(n, generator=gen)[:25].tolist()))
    built = []
    real_knn = pseudo_mod.knn_graph
    monkeypatch.setattr(pseudo_mod, "knn_graph",
                        lambda *a, **k: built.append(a[0].shape[0]) or real_knn(*a, **k))
    lab = _block_labeler(feats, n_views=1, keep=keep)
    z = _logits(25, seed=9, scale=1.0)
    lab.rho = 0.3
    lab.refresh([z], rows=block)
    # the problem of the block alone, with the kNN graph among its rows
    graph = knn_graph(feats[block], 5, random_state=0)
    plan, _ = sp2ot(cost_from_logits(z), 0.3, graph, semantic_weight=0.5, epsilon=EPS,
                    kl_weight=1.0, mm_max_iter=5, **TIGHT)
    (t,) = lab.targets(block[[3, 0, 7]], z[[3, 0, 7]])  # samples by their index in the data
    torch.testing.assert_close(t, 25 * plan[[3, 0, 7]], atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="outside the refreshed block"):
        lab.targets(torch.tensor([int(next(i for i in range(n) if i not in block))]), z[:1])
    lab.refresh([z], rows=block)  # the same block again: its graph is kept, or rebuilt
    assert built == ([25] if keep else [25, 25])
    lab.refresh([_logits(n, seed=9)])  # all rows again: no block, every sample has a target
    assert lab.targets(torch.arange(n), _logits(n, seed=9))[0].shape == (n, K)


@pytest.mark.filterwarnings("ignore::skclust_ot.ot.ConvergenceWarning")  # few MM steps
@pytest.mark.parametrize("keep", [True, False])
def test_the_labeler_symmetrizes_each_graph_it_keeps_once(keep, monkeypatch):
    from skclust_ot.ot import _sp2ot as sp2ot_mod

    n = 60
    gen = torch.Generator().manual_seed(3)
    feats = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    blocks = [torch.arange(0, 30), torch.arange(30, 60)]
    calls = []
    real = sp2ot_mod._symmetrized
    monkeypatch.setattr(pseudo_mod, "_symmetrized",
                        lambda g, c: calls.append(g.shape[0]) or real(g, c))
    lab = _block_labeler(feats, n_views=2, keep=keep)
    lab.rho = 0.3
    for epoch in range(4):
        rows = blocks[epoch % 2]
        z = [_logits(30, seed=10 + epoch), _logits(30, seed=20 + epoch)]
        lab.refresh(z, rows=rows)
        graph = knn_graph(feats[rows], 5, random_state=0)
        for view in range(2):  # the same plans as solving from scratch
            plan, _ = sp2ot(cost_from_logits(z[view]), 0.3, graph, semantic_weight=0.5,
                            epsilon=EPS, kl_weight=1.0, mm_max_iter=5, **TIGHT)
            torch.testing.assert_close(lab.full_targets[view], 30 * plan, atol=1e-7, rtol=0)
    # kept graphs: once per block; otherwise once per refresh, shared by its two views
    assert calls == ([30, 30] if keep else [30] * 4)
    # a full-data graph (no blocks) is symmetrized once for every refresh
    calls.clear()
    lab = _labeler(n, semantic_weight=0.5, graph=knn_graph(feats, 5), n_views=2)
    lab.rho = 0.3
    for seed in range(3):
        lab.refresh([_logits(n, seed=seed), _logits(n, seed=seed + 5)])
    assert calls == [n]


def test_the_private_sp2ot_has_the_public_defaults():
    import inspect

    from skclust_ot.ot._sp2ot import _sp2ot

    public = inspect.signature(sp2ot).parameters
    private = inspect.signature(_sp2ot).parameters
    assert [p.default for p in public.values()] == \
        [private[name].default for name in public]


def test_block_sampler_visits_blocks_in_turn_in_a_fresh_order():
    blocks = [np.array([0, 2, 4]), np.array([1, 3, 5, 6])]
    sampler = BlockSampler(blocks, seed=0)
    assert len(sampler) == 4 and torch.equal(sampler.upcoming(), torch.tensor([0, 2, 4]))
    epochs = [list(sampler) for _ in range(4)]
    assert [sorted(e) for e in epochs] == [[0, 2, 4], [1, 3, 5, 6], [0, 2, 4], [1, 3, 5, 6]]
    again = BlockSampler(blocks, seed=0)
    assert [list(again) for _ in range(4)] == epochs  # seeded
    assert len({tuple(list(BlockSampler(blocks, seed=s))) for s in range(10)}) > 1


@pytest.mark.filterwarnings("ignore::skclust_ot.ot.ConvergenceWarning")  # few MM steps
def test_full_semantic_term_uses_sp2ot_and_fades_at_rho_one():
    n = 40
    gen = torch.Generator().manual_seed(6)
    feats = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    graph = knn_graph(feats, 5)
    z = _logits(n, seed=7, scale=1.0)
    lab = PseudoLabeler(n, K, scope="full", memory_size=0, epsilon=EPS, kl_weight=1.0,
                        semantic_weight=0.5, graph=graph,
                        solver_kwargs={**TIGHT, "mm_max_iter": 5}, n_views=1)
    lab.rho = 0.3
    lab.refresh([z])
    plan, log = sp2ot(cost_from_logits(z), 0.3, graph, semantic_weight=0.5, epsilon=EPS,
                      kl_weight=1.0, mm_max_iter=5, **TIGHT)
    torch.testing.assert_close(lab.full_targets[0], n * plan, atol=1e-7, rtol=0)
    assert log["mm_iter"] >= 1
    p2ot_plan, _ = _direct_p2ot(z, 0.3)
    assert (n * p2ot_plan - lab.full_targets[0]).abs().max() > 1e-3  # the term matters
    # rho = 1: the semantic weight (1 - rho) vanishes, the plan is P²OT's
    lab.rho = 1.0
    lab.refresh([z])
    torch.testing.assert_close(lab.full_targets[0], n * _direct_p2ot(z, 1.0)[0],
                               atol=1e-7, rtol=0)


def test_full_warm_start_is_carried_per_view_and_cuts_iterations(record_solver_calls):
    n = 60
    z1, z2 = _logits(n, seed=8), _logits(n, seed=9)
    lab = _labeler(n)
    lab.rho = 0.5
    lab.refresh([z1, z2])
    cold = [c["warm_start"] for c in record_solver_calls]
    assert cold == [None, None]
    first = copy.deepcopy(lab.full_targets)
    pot = [lab._warm[0], lab._warm[1]]
    cold_iter = lab.last_log["n_iter"]
    n_iter_before = lab.n_solver_iter
    lab.refresh([z1, z2])
    warm = [c["warm_start"] for c in record_solver_calls[2:]]
    for view in range(2):  # each view starts from its own previous potentials
        assert warm[view] is pot[view]
    # the same problem again: warm-started from its own solution, it is
    # solved in (far) fewer iterations, to the same plan
    assert lab.last_log["n_iter"] < cold_iter
    assert lab.n_solver_iter - n_iter_before < n_iter_before
    for a, b in zip(first, lab.full_targets):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=0)
    assert lab.n_solves == 4


def test_release_drops_per_sample_state_but_keeps_column_weights(record_solver_calls):
    n = 30
    z = _logits(n, seed=10)
    feats = torch.randn(n, 2, dtype=torch.float64)
    lab = _labeler(n, graph=knn_graph(feats, 3), graph_transform=lambda x: x)
    lab.rho = 0.6
    lab.refresh([z, z])
    weights = lab.column_weights()
    lab.release()
    assert lab.full_targets == [None, None]
    assert lab.bank_logits == [None, None] and lab.bank_index is None
    assert lab._warm == [None, None]
    assert lab.graph is None and lab.graph_features is None and lab.graph_transform is None
    assert "potentials" not in lab.last_log
    torch.testing.assert_close(lab.column_weights(), weights)
    # the next solve starts cold
    lab.refresh([z, z])
    assert record_solver_calls[-1]["warm_start"] is None


def test_column_weights_are_the_cluster_sizes_of_the_last_plan():
    n = 40
    lab = _labeler(n)
    assert lab.column_weights() is None  # nothing solved yet
    z1, z2 = _logits(n, seed=11), _logits(n, seed=12)
    lab.rho = 0.5
    lab.refresh([z1, z2])
    w = lab.column_weights()
    assert w.dtype == torch.float64 and w.device.type == "cpu" and w.shape == (K,)
    assert abs(float(w.sum()) - 1.0) < 1e-12
    last = lab.full_targets[1].sum(0)  # the last solve is view 2's
    torch.testing.assert_close(w, last / last.sum(), atol=1e-7, rtol=0)
    lab.last_log = {"column_mass": torch.zeros(K), "converged": False}
    assert lab.column_weights() is None  # no mass: no distribution


def test_solver_counters_count_solves_and_non_convergence():
    n = 30
    lab = PseudoLabeler(n, K, scope="full", memory_size=0, epsilon=0.05, kl_weight=1.0,
                        semantic_weight=0.0, solver_kwargs={"max_iter": 2, "tol": 1e-12})
    lab.rho = 0.5
    lab.refresh([_logits(n, seed=13), _logits(n, seed=14)])
    assert lab.n_solves == 2
    assert lab.n_not_converged == 2
    assert lab.n_solver_iter == 4  # max_iter per solve


# ---------------------------------------------------------------------------
# PseudoLabeler, scope "bank"
# ---------------------------------------------------------------------------

def test_bank_is_fifo_of_detached_recent_logits():
    n, batch, memory = 100, 4, 10
    lab = _labeler(n, scope="bank", memory_size=memory)
    lab.rho = 0.5
    zs, idx = [], []
    for step in range(4):
        index = torch.arange(step * batch, (step + 1) * batch)
        z1 = _logits(batch, seed=20 + step).requires_grad_()
        z2 = _logits(batch, seed=40 + step)
        lab.targets(index, z1, z2)
        zs.append((z1.detach(), z2))
        idx.append(index)
        # newest first, the oldest rows dropped beyond memory_size
        expect1 = torch.cat([z[0] for z in reversed(zs)])[:memory]
        expect2 = torch.cat([z[1] for z in reversed(zs)])[:memory]
        expect_i = torch.cat(list(reversed(idx)))[:memory]
        assert lab.bank_logits[0].shape == (min(memory, batch * (step + 1)), K)
        assert not lab.bank_logits[0].requires_grad
        torch.testing.assert_close(lab.bank_logits[0], expect1)
        torch.testing.assert_close(lab.bank_logits[1], expect2)
        assert torch.equal(lab.bank_index, expect_i)


def test_bank_targets_are_the_batch_rows_of_the_bank_plan(record_solver_calls):
    n, batch, memory, rho = 100, 6, 12, 0.5
    lab = _labeler(n, scope="bank", memory_size=memory)
    lab.rho = rho
    for step in range(4):
        index = torch.arange(step * batch, (step + 1) * batch)
        z1, z2 = _logits(batch, seed=60 + step), _logits(batch, seed=80 + step)
        banks = [lab.bank_logits[0], lab.bank_logits[1]]
        t1, t2 = lab.targets(index, z1, z2)
        for t, z, bank in ((t1, z1, banks[0]), (t2, z2, banks[1])):
            stacked = z if bank is None else torch.cat([z, bank])
            # before the bank fills the problem has fewer rows
            assert stacked.shape[0] == batch + min(memory, step * batch)
            plan, _ = _direct_p2ot(stacked, rho)
            assert t.shape == (batch, K)
            torch.testing.assert_close(t, stacked.shape[0] * plan[:batch], atol=1e-7, rtol=0)
            assert t.sum(1).max() <= 1 + 1e-6 and t.min() >= 0
    sizes = [c["n"] for c in record_solver_calls]
    assert sizes == [6, 6, 12, 12, 18, 18, 18, 18]


def test_bank_warm_start_keeps_only_column_potentials(record_solver_calls):
    lab = _labeler(100, scope="bank", memory_size=8)
    lab.rho = 0.5
    lab.targets(torch.arange(4), _logits(4, seed=1), _logits(4, seed=2))
    assert [c["warm_start"] for c in record_solver_calls] == [None, None]
    for step in range(1, 5):  # the bank fills at step 2: problems of 8, 12, 12, 12 rows
        g = [lab._warm[0][1], lab._warm[1][1]]
        assert g[1] is lab.last_log["potentials"][1]  # view 2's, the last solve
        lab.targets(torch.arange(4 * step, 4 * step + 4), _logits(4, seed=2 * step + 1),
                    _logits(4, seed=2 * step + 2))
        for view, call in enumerate(record_solver_calls[-2:]):
            # rows change every step: only each view's column potentials carry over
            assert call["warm_start"][0] is None
            assert call["warm_start"][1] is g[view]
            assert call["warm_start"][1].shape == (K + 1,)
    assert [c["n"] for c in record_solver_calls] == [4, 4, 8, 8, 12, 12, 12, 12, 12, 12]


@pytest.mark.filterwarnings("ignore::skclust_ot.ot.ConvergenceWarning")  # few MM steps
def test_bank_semantic_graph_is_built_over_the_bank_rows():
    n, batch, memory, rho = 50, 8, 16, 0.4
    gen = torch.Generator().manual_seed(30)
    features = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    seen = []

    def transform(x):
        seen.append(x.shape[0])
        return 2.0 * x

    lab = PseudoLabeler(n, K, scope="bank", memory_size=memory, epsilon=EPS, kl_weight=1.0,
                        semantic_weight=0.5, graph_features=features, graph_transform=transform,
                        n_neighbors=4, sigma=1.5, solver_kwargs={**TIGHT, "mm_max_iter": 4},
                        n_views=1)
    lab.rho = rho
    for step in range(3):
        index = torch.randperm(n, generator=gen)[:batch]
        z = _logits(batch, seed=90 + step, scale=1.0)
        bank_i, bank_z = lab.bank_index, lab.bank_logits[0]
        (t,) = lab.targets(index, z)
        all_i = index if bank_i is None else torch.cat([index, bank_i])
        stacked = z if bank_z is None else torch.cat([z, bank_z])
        graph = knn_graph(2.0 * features[all_i], 4, sigma=1.5)
        plan, _ = sp2ot(cost_from_logits(stacked), rho, graph, semantic_weight=0.5,
                        epsilon=EPS, kl_weight=1.0, mm_max_iter=4, **TIGHT)
        torch.testing.assert_close(t, stacked.shape[0] * plan[:batch], atol=1e-6, rtol=0)
    assert seen == [8, 16, 24]  # only the bank's rows are transformed


# ---------------------------------------------------------------------------
# SoftTargetCrossEntropy and SP2OTNet's training step
# ---------------------------------------------------------------------------

def test_soft_target_cross_entropy_by_hand():
    z = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    t = torch.tensor([[0.5, 0.2, 0.0], [0.0, 0.0, 0.0]])  # unnormalized; row 2 unselected
    logp = z - torch.logsumexp(z, dim=1, keepdim=True)
    expect = -(0.5 * logp[0, 0] + 0.2 * logp[0, 1]) / 2  # mean over both rows
    torch.testing.assert_close(SoftTargetCrossEntropy()(z, t), expect)


class TwoViews:
    """Deterministic 'augmentation': odd calls return x, even calls 2x + 1."""

    def __init__(self):
        self.calls = 0

    def to(self, device):
        return self

    def __call__(self, x):
        self.calls += 1
        return x if self.calls % 2 else 2 * x + 1


class TableLabeler:
    """Stub pseudo-labeler: fixed per-sample targets per view; records calls."""

    scope = "bank"
    n_views = 2

    def __init__(self, t1, t2):
        self.t1, self.t2 = t1, t2
        self.rho = 1.0
        self.calls = []

    def targets(self, index, z1, z2, view_index=None):
        self.calls.append({"index": torch.as_tensor(index).clone(), "z1": z1, "z2": z2,
                           "view_index": view_index, "rho": self.rho})
        index = torch.as_tensor(index)
        return self.t1[index], self.t2[index]


def _tiny_net(labeler, views=None, n_features=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    module = nn.Linear(n_features, K)
    kwargs.setdefault("lr", 0.5)
    net = SP2OTNet(module, views=views, pseudo_labeler=labeler, optimizer=torch.optim.SGD,
                   max_epochs=1, batch_size=8, train_split=None, verbose=0, **kwargs)
    return net.initialize()


def _data(n=8, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen)
    t1 = torch.rand(n, K, generator=gen)
    t2 = torch.rand(n, K, generator=gen)
    return X, t1, t2


def test_train_step_loss_is_the_swapped_soft_cross_entropy():
    X, t1, t2 = _data()
    t1[:, 0] += 2.0  # the two views' targets point to different clusters
    t2[:, 3] += 2.0
    labeler = TableLabeler(t1, t2)
    net = _tiny_net(labeler, views=TwoViews())
    index = torch.arange(8)
    W = net.module_.weight.detach().clone()
    b = net.module_.bias.detach().clone()
    step = net.train_step_single((X, index))
    z1, z2 = X @ W.T + b, (2 * X + 1) @ W.T + b  # view 1 = x, view 2 = 2x + 1
    ce = SoftTargetCrossEntropy()
    expect = 0.5 * (ce(z2, t1) + ce(z1, t2))
    torch.testing.assert_close(step["loss"], expect)
    unswapped = 0.5 * (ce(z1, t1) + ce(z2, t2))
    assert abs(float(expect - unswapped)) > 1e-3  # the test can tell the two apart
    torch.testing.assert_close(step["y_pred"].detach(), z1)
    # the labeler saw detached logits of both views and the batch's indices
    call = labeler.calls[-1]
    assert torch.equal(call["index"], index) and call["view_index"] is None
    assert not call["z1"].requires_grad and not call["z2"].requires_grad
    torch.testing.assert_close(call["z1"], z1)
    torch.testing.assert_close(call["z2"], z2)


def test_train_step_gradient_and_update():
    X, t1, t2 = _data(seed=1)
    net = _tiny_net(TableLabeler(t1, t2), views=TwoViews(), lr=0.5)
    ref = copy.deepcopy(net.module_)
    ce = SoftTargetCrossEntropy()
    loss = 0.5 * (ce(ref(2 * X + 1), t1) + ce(ref(X), t2))
    loss.backward()
    net.train_step((X, torch.arange(8)))
    # one SGD step with the gradient of the hand-computed loss
    torch.testing.assert_close(net.module_.weight, ref.weight - 0.5 * ref.weight.grad)
    torch.testing.assert_close(net.module_.bias, ref.bias - 0.5 * ref.bias.grad)
    assert not torch.allclose(net.module_.weight, ref.weight)


def test_unselected_samples_do_not_contribute_to_the_gradient():
    X, t1, t2 = _data(seed=2)
    unselected = torch.tensor([1, 4, 6])
    t1[unselected] = 0.0  # row mass 0: left out by the partial transport
    t2[unselected] = 0.0

    def grads(X):
        net = _tiny_net(TableLabeler(t1, t2), views=TwoViews(), seed=3)
        net.optimizer_.zero_grad()
        net.train_step_single((X, torch.arange(8)))
        return [p.grad.clone() for p in net.module_.parameters()]

    base = grads(X)
    assert all(g.abs().max() > 0 for g in base)
    X2 = X.clone()
    X2[unselected] = 100.0 * torch.randn(3, 3)  # whatever the unselected samples are
    for a, b in zip(base, grads(X2)):
        torch.testing.assert_close(a, b)


def test_neighbor_views_show_a_neighbour_and_read_its_targets():
    X, t1, t2 = _data(seed=4)
    neighbors = torch.stack([(torch.arange(8) + 1) % 8, (torch.arange(8) + 2) % 8], dim=1)
    labeler = TableLabeler(t1, t2)
    net = _tiny_net(labeler, neighbor_views=1.0, neighbors=neighbors, neighbor_data=X)
    index = torch.tensor([0, 3, 5])
    net.train_step_single((X[index], index))
    call = labeler.calls[-1]
    v_index, partners = call["view_index"]
    assert torch.equal(torch.as_tensor(v_index), index)
    for i, p in zip(index.tolist(), partners.tolist()):  # always a neighbour (prob 1)
        assert p in neighbors[i].tolist()
    W, b = net.module_.weight.detach(), net.module_.bias.detach()
    torch.testing.assert_close(call["z2"], X[partners] @ W.T + b)
    torch.testing.assert_close(call["z1"], X[index] @ W.T + b)
    # probability 0 or no neighbours: the second view is the sample itself
    assert _tiny_net(labeler, neighbor_views=0.0, neighbors=neighbors)._partners(index) is None
    assert _tiny_net(labeler, neighbor_views=1.0)._partners(index) is None


def test_padded_shuffle_sampler():
    s = PaddedShuffleSampler(5, 12, seed=3)
    assert len(s) == 12
    e0, e1 = list(s), list(s)
    assert len(e0) == 12 and sorted(e0[:5]) == list(range(5))
    assert set(e0) <= set(range(5))
    assert e0 != e1  # a fresh permutation each epoch
    assert list(PaddedShuffleSampler(5, 12, seed=3)) == e0  # reproducible


# ---------------------------------------------------------------------------
# Callbacks
# ---------------------------------------------------------------------------

class RecordingLabeler(PseudoLabeler):
    """A real bank-scope labeler that records the rho each call sees."""

    def targets(self, index, *view_logits, view_index=None):
        self.seen = getattr(self, "seen", []) + [self.rho]
        return super().targets(index, *view_logits, view_index=view_index)


@pytest.mark.parametrize("kind", ["sigmoid", "linear", "constant"])
@pytest.mark.parametrize("drop_last", [False, True])
def test_rho_scheduler_sets_the_scheduled_rho_per_step(kind, drop_last):
    n, batch, epochs, rho0 = 20, 8, 3, 0.2
    per_epoch = 2 if drop_last else 3
    T = per_epoch * epochs
    labeler = RecordingLabeler(n, K, scope="bank", memory_size=16, epsilon=EPS, kl_weight=1.0,
                               semantic_weight=0.0, solver_kwargs={"max_iter": 50})
    torch.manual_seed(0)
    net = SP2OTNet(nn.Linear(3, K), pseudo_labeler=labeler, optimizer=torch.optim.SGD, lr=0.1,
                   max_epochs=epochs, batch_size=batch, train_split=None, verbose=0,
                   iterator_train__drop_last=drop_last,
                   callbacks=[("rho", RhoScheduler(rho0, kind))])
    net.fit(torch.randn(n, 3), torch.arange(n))
    if kind == "sigmoid":
        expect = [rho0 + (1 - rho0) * math.exp(-5 * (1 - t / T) ** 2) for t in range(T)]
    elif kind == "linear":
        expect = [rho0 + (1 - rho0) * t / T for t in range(T)]
    else:
        expect = [rho0] * T
    assert labeler.seen == pytest.approx(expect, abs=1e-12)
    assert labeler.seen == pytest.approx([rho_schedule(t, T, rho0=rho0, kind=kind)
                                          for t in range(T)])
    assert np.all(np.diff(labeler.seen) >= 0)
    if kind != "constant":  # the ramp ends near full mass
        assert labeler.seen[-1] > 0.85
    # the history records, per epoch, the rho of the epoch's last step
    assert net.history[:, "rho"] == pytest.approx(
        [expect[(e + 1) * per_epoch - 1] for e in range(epochs)])


def test_full_data_pseudo_labels_refresh_once_per_epoch_in_eval_mode():
    n, batch, epochs = 24, 8, 2
    gen = torch.Generator().manual_seed(5)
    X = torch.randn(n, 3, generator=gen)
    labeler = PseudoLabeler(n, K, scope="full", memory_size=0, epsilon=EPS, kl_weight=1.0,
                            semantic_weight=0.0, solver_kwargs={"max_iter": 200})
    refreshed = []
    real_refresh = labeler.refresh

    def refresh(view_logits, rows=None):
        assert rows is None  # no BlockSampler: every sample, every epoch
        refreshed.append({"rho": labeler.rho, "logits": [z.clone() for z in view_logits],
                          "state": copy.deepcopy(net.module_.state_dict())})
        real_refresh(view_logits)

    labeler.refresh = refresh
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, K))
    net = SP2OTNet(module, pseudo_labeler=labeler, optimizer=torch.optim.SGD, lr=0.1,
                   max_epochs=epochs, batch_size=batch, train_split=None, verbose=0,
                   iterator_train__shuffle=True,
                   callbacks=[("rho", RhoScheduler(0.3, "linear")),
                              ("full", FullDataPseudoLabels())])
    net.fit(X, torch.arange(n))
    assert len(refreshed) == epochs
    T = 3 * epochs
    for e, r in enumerate(refreshed):
        # solved with the rho of the epoch's first step
        assert r["rho"] == pytest.approx(rho_schedule(3 * e, T, rho0=0.3, kind="linear"))
        ref = copy.deepcopy(module)
        ref.load_state_dict(r["state"])
        ref.eval()
        with torch.no_grad():
            expect = ref(X)  # all samples, in order, BatchNorm in eval mode
        assert len(r["logits"]) == 2
        for z in r["logits"]:
            assert not z.requires_grad
            torch.testing.assert_close(z, expect)
    # the batches read rows of the epoch's plans (here: all rows seen)
    assert labeler.full_targets[0].shape == (n, K)


def test_full_data_pseudo_labels_skip_the_bank_scope():
    labeler = TableLabeler(torch.zeros(8, K), torch.zeros(8, K))
    labeler.refresh = lambda *a: pytest.fail("refresh called in bank scope")
    net = _tiny_net(labeler)
    FullDataPseudoLabels().on_epoch_begin(net, dataset_train=None)


def test_refresh_does_not_touch_batchnorm_statistics():
    n = 16
    module = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.Linear(5, K))
    labeler = _labeler(n)
    net = SP2OTNet(module, pseudo_labeler=labeler, batch_size=8, train_split=None, verbose=0)
    net.initialize()
    before = copy.deepcopy(net.module_.state_dict())
    dataset = net.get_dataset(torch.randn(n, 3), torch.arange(n))
    FullDataPseudoLabels().on_epoch_begin(net, dataset_train=dataset)
    for key, value in net.module_.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert labeler.full_targets[0].shape == (n, K)


class _SolveCounter(Callback):
    def on_epoch_end(self, net, **kwargs):
        lab = net.pseudo_labeler
        self.totals = getattr(self, "totals", []) + [lab.n_solver_iter]
        self.not_conv = getattr(self, "not_conv", []) + [lab.n_not_converged]
        self.weights = lab.column_weights()


def test_pseudo_label_stats_record_solver_effort_and_active_clusters():
    n, epochs = 20, 3
    labeler = _labeler(n, scope="bank", memory_size=16)
    labeler.solver_kwargs = {"max_iter": 8, "tol": 1e-8}  # some solves stop early
    torch.manual_seed(0)
    counter = _SolveCounter()
    net = SP2OTNet(nn.Linear(3, K), pseudo_labeler=labeler, optimizer=torch.optim.SGD, lr=0.1,
                   max_epochs=epochs, batch_size=8, train_split=None, verbose=0,
                   callbacks=[("stats", PseudoLabelStats()), ("count", counter)])
    net.fit(torch.randn(n, 3), torch.arange(n))
    totals = [0] + counter.totals
    assert net.history[:, "ot_iter"] == [b - a for a, b in zip(totals, totals[1:])]
    assert all(v > 0 for v in net.history[:, "ot_iter"])
    nc = [0] + counter.not_conv
    assert net.history[:, "ot_not_converged"] == [b - a for a, b in zip(nc, nc[1:])]
    assert 0 < nc[-1] <= labeler.n_solves
    w = counter.weights
    assert net.history[-1, "n_active"] == int((w * K > 0.01).sum())
    # a cluster with (almost) no mass is not active
    stats = PseudoLabelStats()
    labeler.last_log = {"column_mass": torch.tensor([0.5, 0.5, 0.001, 0.0]),
                        "converged": True}
    stats.on_epoch_begin(net)
    stats.on_epoch_end(net)
    assert net.history[-1, "n_active"] == 2


# ---------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------

def test_cosine_head_set_prototypes():
    gen = torch.Generator().manual_seed(0)
    head = CosineHead(5, 3, scale=7.0)
    P = torch.randn(3, 5, generator=gen)
    head.set_prototypes(P.numpy().astype(np.float64))  # any array-like, cast
    assert head.weight.dtype == torch.float32
    torch.testing.assert_close(head.weight.data, P)
    x = torch.randn(10, 5, generator=gen)
    cos = (x @ P.T) / (x.norm(dim=1, keepdim=True) * P.norm(dim=1))
    torch.testing.assert_close(head(x), 7.0 * cos)
    assert head(x).abs().max() <= 7.0 + 1e-5
    # a prototype's own direction (at any length) is its own cluster, at the full scale
    out = head(torch.cat([3.0 * P, 0.1 * P]))
    assert out.argmax(1).tolist() == [0, 1, 2, 0, 1, 2]
    torch.testing.assert_close(out.diagonal(), torch.full((3,), 7.0))
    # only directions count: rescaling prototypes changes nothing
    head2 = CosineHead(5, 3, scale=7.0)
    head2.set_prototypes(P * torch.tensor([[2.0], [0.5], [10.0]]))
    torch.testing.assert_close(head2(x), head(x))
    # set_prototypes does not record a graph and keeps the parameter object
    w = head.weight
    head.set_prototypes(torch.ones(3, 5, requires_grad=True))
    assert head.weight is w and head.weight.grad_fn is None and head.weight.requires_grad


def test_cosine_head_set_prototypes_rejects_wrong_shape():
    head = CosineHead(5, 3)
    before = head.weight.detach().clone()
    for bad in (torch.zeros(5, 3), torch.zeros(3, 4), torch.zeros(15)):
        with pytest.raises(ValueError, match="prototypes must have shape"):
            head.set_prototypes(bad)
    torch.testing.assert_close(head.weight.data, before)


def test_standardize_affine_clip_and_buffers():
    mean = [1.0, -2.0, 0.0]
    scale = [2.0, 0.5, 1.0]
    x = torch.tensor([[3.0, -2.0, 10.0], [1.0, 0.0, -10.0]])
    x0 = x.clone()
    s = Standardize(mean, scale)
    torch.testing.assert_close(s(x), torch.tensor([[1.0, 0.0, 10.0], [0.0, 4.0, -10.0]]))
    torch.testing.assert_close(x, x0)  # the input is not modified in place
    assert list(s.parameters()) == []
    assert set(s.state_dict()) == {"mean", "scale"}
    # one scale for all features
    torch.testing.assert_close(Standardize(mean, 2.0)(x), (x - torch.tensor(mean)) / 2.0)
    # clipped to per-feature bounds
    c = Standardize(mean, scale, low=[-0.5, -1.0, -3.0], high=[0.5, 1.0, 3.0])
    torch.testing.assert_close(c(x), torch.tensor([[0.5, 0.0, 3.0], [0.0, 1.0, -3.0]]))
    assert set(c.state_dict()) == {"mean", "scale", "low", "high"}
    # only one bound
    h = Standardize(mean, scale, high=[0.5, 1.0, 3.0])
    torch.testing.assert_close(h(x), torch.tensor([[0.5, 0.0, 3.0], [0.0, 1.0, -10.0]]))
    # the statistics are copies of the inputs
    m = torch.tensor(mean)
    s2 = Standardize(m, scale)
    m += 100.0
    torch.testing.assert_close(s2.mean, torch.tensor(mean))
    # gradients flow to the input: d/dx (x - m)/s = 1/s
    xg = x.clone().requires_grad_()
    s(xg).sum().backward()
    torch.testing.assert_close(xg.grad, (1.0 / torch.tensor(scale)).expand(2, 3))


def test_mlp_encoder_shapes_and_batchnorm_modes():
    torch.manual_seed(0)
    enc = MLPEncoder(6, hidden_dims=(8, 7), embedding_dim=5)
    assert enc.embedding_dim == 5
    n_linear = sum(isinstance(m, nn.Linear) for m in enc.modules())
    assert n_linear == 3
    x = torch.randn(32, 2, 3)  # flattened to 6 features
    z = enc(x)
    assert z.shape == (32, 5)
    # training: the last (non-affine) BatchNorm centres and scales the batch
    torch.testing.assert_close(z.mean(0), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(0, unbiased=False), torch.ones(5), atol=1e-3, rtol=0)
    last = enc.layers[-1]
    assert isinstance(last, nn.BatchNorm1d) and not last.affine
    # eval: per-sample, independent of the rest of the batch
    enc.eval()
    full = enc(x)
    torch.testing.assert_close(enc(x[:3]), full[:3])
    torch.testing.assert_close(enc(x[5:6]), full[5:6])
    assert any(isinstance(m, nn.Dropout) for m in MLPEncoder(6, dropout=0.2).modules())
    assert not any(isinstance(m, nn.Dropout) for m in MLPEncoder(6).modules())


def test_cluster_module_composes_preprocess_encoder_head():
    torch.manual_seed(0)
    pre = Standardize([1.0, 2.0], [2.0, 4.0])
    enc = nn.Linear(2, 3)
    head = CosineHead(3, K)
    mod = ClusterModule(enc, head, pre)
    x = torch.randn(6, 2)
    torch.testing.assert_close(mod.embed(x), enc(pre(x)))
    torch.testing.assert_close(mod(x), head(enc(pre(x))))
    plain = ClusterModule(enc, head)
    assert isinstance(plain.preprocess, nn.Identity)
    torch.testing.assert_close(plain(x), head(enc(x)))
    # embeddings with extra dimensions are flattened before the head
    conv = ClusterModule(nn.Unflatten(1, (3, 1)), head)
    assert conv.embed(torch.randn(6, 3)).shape == (6, 3)
    assert conv(torch.randn(6, 3)).shape == (6, K)


def test_feature_views_identity_and_shapes():
    x = torch.randn(5, 3)
    views = FeatureViews(torch.zeros(3), torch.ones(3), noise=0.0, mask_prob=0.0)
    assert torch.equal(views(x), x)
    x4 = torch.randn(4, 2, 3)
    v = FeatureViews(torch.zeros(2, 3), torch.ones(2, 3), noise=0.3, mask_prob=0.2)
    assert v(x4).shape == x4.shape
    assert v.to("cpu") is v


def test_feature_views_masking_moves_entries_to_the_mean():
    torch.manual_seed(0)
    mean = torch.tensor([1.0, -1.0, 5.0])
    x = torch.randn(4000, 3) * 2 + mean
    p = 0.25
    v = FeatureViews(mean.numpy(), np.ones(3), noise=0.0, mask_prob=p)(x)
    masked = torch.isclose(v, mean.expand_as(v))
    kept = torch.isclose(v, mean + (x - mean) / (1 - p))
    assert bool((masked | kept).all())  # each entry: at the mean, or kept and rescaled
    assert abs(float(masked.float().mean()) - p) < 0.03
    # the rescaling keeps the view unbiased: E[view] = x
    many = FeatureViews(mean, torch.ones(3), noise=0.0, mask_prob=p)(x[:1].expand(20000, 3))
    torch.testing.assert_close(many.mean(0), x[0], atol=0.05, rtol=0)


def test_feature_views_noise_is_relative_to_the_std():
    torch.manual_seed(1)
    std = torch.tensor([0.0, 1.0, 100.0])
    x = torch.randn(20000, 3)
    v = FeatureViews(torch.zeros(3), std, noise=0.2, mask_prob=0.0)(x)
    d = v - x
    assert bool((d[:, 0] == 0).all())  # a constant feature gets no noise
    torch.testing.assert_close(d[:, 1:].std(0), 0.2 * std[1:], rtol=0.03, atol=0)
    torch.testing.assert_close(d[:, 1:].mean(0) / std[1:], torch.zeros(2), atol=0.02, rtol=0)


def test_rho_scheduler_counts_the_steps_of_iterator_train_batch_size():
    n, epochs = 20, 2
    labeler = RecordingLabeler(n, K, scope="bank", memory_size=8, epsilon=EPS, kl_weight=1.0,
                               semantic_weight=0.0, solver_kwargs={"max_iter": 20})
    net = SP2OTNet(nn.Linear(3, K), pseudo_labeler=labeler, optimizer=torch.optim.SGD, lr=0.1,
                   max_epochs=epochs, train_split=None, verbose=0,
                   iterator_train__batch_size=5,  # batch_size keeps skorch's default 128
                   callbacks=[("rho", RhoScheduler(0.2, "linear"))])
    net.fit(torch.randn(n, 3), torch.arange(n))
    T = 4 * epochs
    assert len(labeler.seen) == T
    assert labeler.seen == pytest.approx([rho_schedule(t, T, rho0=0.2, kind="linear")
                                          for t in range(T)])


def test_keyboard_interrupt_is_not_swallowed():
    class Interrupted(SP2OTNet):
        def train_step_single(self, batch, **fit_params):
            raise KeyboardInterrupt  # a Ctrl-C in the training step

    X, t1, t2 = _data()
    net = Interrupted(nn.Linear(3, K), pseudo_labeler=TableLabeler(t1, t2), max_epochs=2,
                      batch_size=4, train_split=None, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, torch.arange(8))


def test_a_callbacks_keyboard_interrupt_stops_training():
    class Stop(Callback):
        def on_batch_begin(self, net, **kwargs):
            if len(net.history) == 2:
                raise KeyboardInterrupt  # skorch's way to ask for a stop

    X, t1, t2 = _data()
    net = SP2OTNet(nn.Linear(3, K), pseudo_labeler=TableLabeler(t1, t2), max_epochs=4,
                   batch_size=4, train_split=None, verbose=0,
                   callbacks=[("stop", Stop())])
    net.fit(X, torch.arange(8))
    assert len(net.history) == 2 and net.stopped_by_ == ("stop", "on_batch_begin")


def test_finish_ddp_without_ddp_returns_the_plain_module():
    X, t1, t2 = _data()
    net = _tiny_net(TableLabeler(t1, t2))
    module = net.module_
    assert net.inner_module() is module
    assert net.finish_ddp() is net
    assert net.module_ is module and net.ddp is False


def test_adaptive_size_prior_is_the_kl_to_the_plans_own_proportions():
    """size_prior='adaptive': the uniform P2OT problem plus the per-cluster cost
    shift kl_weight * log((1/K) / prior), prior the floored average of the plans'
    column proportions."""
    import torch
    from skclust_ot.nn import PseudoLabeler
    from skclust_ot.ot import cost_from_logits, p2ot

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(60, 3, generator=gen, dtype=torch.float64) * 3
    labeler = PseudoLabeler(60, 3, scope="full", memory_size=0, epsilon=0.1, kl_weight=1.0,
                            semantic_weight=0.0, size_prior="adaptive", prior_momentum=0.5,
                            prior_floor=0.2)
    labeler.rho = 0.5
    labeler.refresh([logits])
    first_mass = labeler.last_log["column_mass"].double()
    expected_prior = (first_mass / first_mass.sum()).clamp_min(0.2 / 3)
    expected_prior = expected_prior / expected_prior.sum()
    torch.testing.assert_close(labeler.prior, expected_prior)
    # the second solve is P2OT on the shifted cost
    labeler._warm = [None, None]
    labeler.refresh([logits])
    shift = torch.log((1.0 / 3) / expected_prior)[None, :]
    plan, _ = p2ot(cost_from_logits(logits) + shift, 0.5, epsilon=0.1, kl_weight=1.0)
    torch.testing.assert_close(labeler.full_targets[0], plan * 60)
    # the uniform prior never shifts the cost
    uniform = PseudoLabeler(60, 3, scope="full", memory_size=0, epsilon=0.1, kl_weight=1.0,
                            semantic_weight=0.0)
    uniform.rho = 0.5
    uniform.refresh([logits])
    uniform.refresh([logits])
    assert uniform.prior is None


def test_epoch_table_has_no_colour_codes_off_a_terminal_and_readable_numbers(capsys):
    import numpy as np

    from skclust_ot import SP2OTClustering

    X = np.random.default_rng(0).normal(size=(120, 4))
    SP2OTClustering(n_clusters=3, max_epochs=2, verbose=1, random_state=0).fit(X)
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # captured stdout is not a terminal
    assert "0.0000" not in out and "0.0001" in out  # lr 1e-4, four significant digits
    assert "kNN graph" in out and "start: spectral partition" in out  # set-up phases


# --------------------------------------------------------------------------- #
# the batch-indexing iterator
# --------------------------------------------------------------------------- #
def _skorch_batches(net, dataset, training):
    from skorch import NeuralNet

    return [(Xi.clone(), yi.clone()) for Xi, yi in NeuralNet.get_iterator(net, dataset, training)]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("make_X", [lambda X: X, lambda X: X.numpy()])
@pytest.mark.parametrize("subset", [False, True])
def test_iterator_gives_skorch_batches_in_skorch_order(training, make_X, subset):
    from skorch.dataset import Dataset

    X, t1, t2 = _data(n=29)
    net = _tiny_net(TableLabeler(t1, t2), iterator_train__shuffle=True)
    dataset = Dataset(make_X(X), torch.arange(29))
    if subset:
        dataset = torch.utils.data.Subset(dataset, [3, 1, 4, 15, 9, 2, 6, 28, 5, 3])
    torch.manual_seed(7)
    expected = _skorch_batches(net, dataset, training)
    after_expected = torch.rand(3)
    torch.manual_seed(7)
    got = [(Xi, yi) for Xi, yi in net.get_iterator(dataset, training)]
    assert torch.equal(torch.rand(3), after_expected)  # the same draws of torch's RNG
    assert len(got) == len(expected) > 1
    for (Xa, ya), (Xb, yb) in zip(got, expected):
        assert torch.equal(torch.as_tensor(Xa), torch.as_tensor(Xb)) and torch.equal(ya, yb)


def test_iterator_reads_a_batch_with_one_index_and_keeps_a_given_sampler():
    from skorch.dataset import Dataset

    class CountingDataset(Dataset):
        calls = 0

        def __getitem__(self, i):
            type(self).calls += 1
            return super().__getitem__(i)

    X, t1, t2 = _data(n=20)
    sampler = BlockSampler([range(0, 20, 2), range(1, 20, 2)], seed=0)
    net = _tiny_net(TableLabeler(t1, t2), iterator_train__sampler=sampler)
    dataset = Dataset(X, torch.arange(20))
    order = list(BlockSampler([range(0, 20, 2), range(1, 20, 2)], seed=0))
    batches = [yi for _, yi in net.get_iterator(dataset, training=True)]
    assert torch.cat(batches).tolist() == order  # the sampler's rows, in its order
    assert [len(b) for b in batches] == [8, 2]
    # a dataset of another type is read row by row, as skorch does
    counting = CountingDataset(X, torch.arange(20))
    assert len(list(net.get_iterator(counting, training=False))) == 3
    assert CountingDataset.calls == 20
    # a collate_fn of the user's is kept (skorch's iterator)
    net = _tiny_net(TableLabeler(t1, t2), iterator_valid__collate_fn=len)
    assert list(net.get_iterator(dataset, training=False)) == [8, 8, 4]
