"""torch.distributed: the sharded solvers and data-parallel fits, 2 gloo processes on CPU.

Each test spawns two fresh processes that join a gloo group through a file
store, runs its body on both ranks and collects what each rank saved. A rank
that hangs fails the test after a timeout instead of blocking the suite.
"""

import os
import pickle
import time
import traceback

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from skorch.callbacks import Callback

from skclust_ot import SP2OTClustering
from skclust_ot.ot import Communicator, knn_graph, p2ot, p2ot_distributed, sp2ot, \
    sp2ot_distributed

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

WORLD = 2
TIMEOUT = 240


def _entry(rank, body, store, out_dir, args):
    torch.set_num_threads(1)
    import datetime

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=WORLD, timeout=datetime.timedelta(seconds=TIMEOUT))
    try:
        result = body(rank, *args)
    except BaseException as exc:  # reported to the parent, which fails the test
        result = {"exception": (type(exc).__name__, str(exc), traceback.format_exc())}
    # reported before the teardown below, so that the parent can tell a rank
    # that died in its body from one that died in gloo's teardown
    with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as fh:
        pickle.dump(result, fh)
    try:
        # leave together: tearing down gloo while the other rank still works
        # can abort the process ("terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_ranks(tmp_path, body, *args, teardown_may_abort=False):
    """Run ``body(rank, *args)`` on two gloo ranks; return their results.

    ``teardown_may_abort``: a rank process that reported its result and was
    then killed by a signal does not fail the test. Only for a body in which
    a collective failed: gloo's teardown of a group whose peer closed the
    connection can abort the process ("terminate called without an active
    exception", seen in 2 of 5 full-suite runs of the mid-training error
    test and in none of 20 runs of it alone). A rank that dies before it
    reports still fails the test.
    """
    out_dir = tmp_path / "out"
    out_dir.mkdir(parents=True)
    ctx = mp.start_processes(_entry, args=(body, str(tmp_path / "store"), str(out_dir), args),
                             nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT + 60
    while True:
        try:
            if ctx.join(timeout=5):
                break
        except mp.ProcessExitedException as exc:
            reported = all((out_dir / f"rank{r}.pkl").exists() for r in range(WORLD))
            if not (teardown_may_abort and exc.signal_name and reported):
                raise
            for p in ctx.processes:  # the other rank may still be in its teardown
                p.join(timeout=60)
            break
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("a rank hung (no result within the timeout)")
    results = []
    for rank in range(WORLD):
        with open(out_dir / f"rank{rank}.pkl", "rb") as fh:
            results.append(pickle.load(fh))
    return results


def _no_exceptions(results):
    for rank, res in enumerate(results):
        if isinstance(res, dict) and "exception" in res:
            pytest.fail(f"rank {rank} raised:\n{res['exception'][2]}")


# --------------------------------------------------------------------------- #
# sharded solvers == single-process solvers on the concatenated rows
# --------------------------------------------------------------------------- #
def _problem(seed=0, n=300, k=7, d=5):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=gen, dtype=torch.float64)
    logits = 3.0 * torch.randn(n, k, generator=gen, dtype=torch.float64)
    cost = -torch.log_softmax(logits, dim=1)
    return features, cost


SPLIT = 170  # rank 0 holds rows [0, 170), rank 1 the other 130

SOLVER_CASES = [
    dict(rho=0.3, kl_weight=1.0), dict(rho=1.0, kl_weight=1.0),
    dict(rho=0.5, kl_weight=float("inf")), dict(rho=0.2, kl_weight=10.0, epsilon=0.05),
]


def _solver_body(rank):
    features, cost = _problem()
    rows = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
    graph = knn_graph(features, 10).coalesce()
    local_graph = graph.index_select(0, torch.arange(cost.shape[0])[rows])
    out = {"p2ot": [], "sp2ot": None}
    for case in SOLVER_CASES:
        plan, log = p2ot_distributed(cost[rows], tol=1e-12, max_iter=20000, **case)
        out["p2ot"].append((plan, log["converged"], float(log["column_mass"].sum())))
    plan, log = sp2ot_distributed(cost[rows], 0.3, local_graph, semantic_weight=0.5,
                                  tol=1e-12, max_iter=20000, mm_max_iter=20, mm_tol=1e-12)
    out["sp2ot"] = (plan, log["mm_iter"], log["objective"])
    comm = Communicator()
    out["gathered"] = comm.gather_rows(cost[rows])
    return out


@pytest.mark.filterwarnings("ignore::skclust_ot.ot.ConvergenceWarning")
def test_sharded_solvers_match_single_process(tmp_path):
    results = run_ranks(tmp_path, _solver_body)
    _no_exceptions(results)
    features, cost = _problem()
    n = cost.shape[0]
    for i, case in enumerate(SOLVER_CASES):
        reference, ref_log = p2ot(cost, tol=1e-12, max_iter=20000, **case)
        assert ref_log["converged"]
        plan = torch.cat([results[0]["p2ot"][i][0], results[1]["p2ot"][i][0]])
        assert results[0]["p2ot"][i][1] and results[1]["p2ot"][i][1]
        # on the scale of the pseudo-labels N * Q
        assert torch.allclose(n * plan, n * reference, atol=1e-6, rtol=0), case
        # the column masses are global: the same on both ranks
        assert results[0]["p2ot"][i][2] == results[1]["p2ot"][i][2]
    graph = knn_graph(features, 10)
    reference, ref_log = sp2ot(cost, 0.3, graph, semantic_weight=0.5, tol=1e-12,
                               max_iter=20000, mm_max_iter=20, mm_tol=1e-12)
    plan = torch.cat([results[0]["sp2ot"][0], results[1]["sp2ot"][0]])
    assert results[0]["sp2ot"][1] == results[1]["sp2ot"][1] == ref_log["mm_iter"]
    assert ref_log["mm_iter"] >= 2  # the semantic term did something
    assert torch.allclose(n * plan, n * reference, atol=1e-6, rtol=0)
    assert np.allclose(results[0]["sp2ot"][2], ref_log["objective"], rtol=1e-9, atol=1e-12)
    assert torch.equal(results[0]["gathered"], cost) and torch.equal(results[1]["gathered"], cost)


# --------------------------------------------------------------------------- #
# data-parallel fits
# --------------------------------------------------------------------------- #
def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    sizes = [240, 90, 40, 20]
    centres = 6.0 * rng.standard_normal((len(sizes), 8))
    X = np.vstack([c + rng.standard_normal((n, 8)) for c, n in zip(centres, sizes)])
    y = np.repeat(np.arange(len(sizes)), sizes)
    order = rng.permutation(len(y))
    return X[order].astype(np.float32), y[order]


FIT = dict(n_clusters=4, max_epochs=8, batch_size=64, random_state=0, device="cpu")
SHARD = 230  # rank 0: rows [0, 230), rank 1: the other 160


def _fit_body(rank, params):
    X, _ = _blobs()
    local = X[:SHARD] if rank == 0 else X[SHARD:]
    est = SP2OTClustering(distributed=True, **params).fit(local)
    return {"labels": est.labels_, "predict_all": est.predict(X),
            "weights": est.cluster_weights_, "model": pickle.dumps(est),
            "n_iter": est.n_iter_}


@pytest.mark.parametrize("scope", ["full", "bank"])
def test_two_process_fit_matches_single_process(tmp_path, scope):
    from sklearn.metrics import adjusted_rand_score

    params = dict(FIT, ot_scope=scope)
    results = run_ranks(tmp_path, _fit_body, params)
    _no_exceptions(results)
    X, y = _blobs()
    # one model on every rank: identical predictions, global cluster weights
    assert np.array_equal(results[0]["predict_all"], results[1]["predict_all"])
    np.testing.assert_allclose(results[0]["weights"], results[1]["weights"], rtol=1e-6)
    labels = np.concatenate([results[0]["labels"], results[1]["labels"]])
    assert np.array_equal(labels, results[0]["predict_all"])
    # the same seed in one process gives (nearly) the same clustering
    single = SP2OTClustering(ot_scope=scope, **FIT).fit(X)
    assert adjusted_rand_score(single.labels_, labels) >= 0.95
    assert adjusted_rand_score(y, labels) >= 0.9
    # the pickled model predicts in a process without a process group
    model = pickle.loads(results[1]["model"])
    assert np.array_equal(model.predict(X), labels)
    assert model.net_.pseudo_labeler.comm is None


SAMPLE = 150  # the landmarks of the sampled fit below (of 390 rows)


def _sampled_fit_body(rank):
    import skclust_ot._defaults as defaults
    from skclust_ot._parallel import Shards

    # the limits of a large fit, at the size of a test
    for name in ("GRAPH_START_MAX_ROWS", "EPOCH_MAX_ROWS", "SEMANTIC_MAX_ROWS",
                 "DISTRIBUTED_SAMPLE_MIN_ROWS"):
        setattr(defaults, name, SAMPLE)
    gathered = []
    all_rows, sampled_rows = Shards.all_rows, Shards.sampled_rows

    def spy_all(self, rows):
        gathered.append("all")
        return all_rows(self, rows)

    def spy_sampled(self, rows, picked):
        sample = sampled_rows(self, rows, picked)
        gathered.append(tuple(sample.shape))
        return sample

    Shards.all_rows, Shards.sampled_rows = spy_all, spy_sampled
    X, _ = _blobs()
    local = X[:SHARD] if rank == 0 else X[SHARD:]
    est = SP2OTClustering(distributed=True, **FIT).fit(local)
    return {"labels": est.labels_, "predict_all": est.predict(X), "gathered": gathered}


def test_a_large_distributed_fit_holds_its_shard_and_a_sample_not_every_row(tmp_path):
    from sklearn.metrics import adjusted_rand_score

    results = run_ranks(tmp_path, _sampled_fit_body)
    _no_exceptions(results)
    X, y = _blobs()
    # every rank gathered the landmarks (SAMPLE rows), never all 390 rows
    assert results[0]["gathered"] == results[1]["gathered"] == [(SAMPLE, X.shape[1])]
    assert np.array_equal(results[0]["predict_all"], results[1]["predict_all"])
    labels = np.concatenate([results[0]["labels"], results[1]["labels"]])
    assert np.array_equal(labels, results[0]["predict_all"])
    assert adjusted_rand_score(y, labels) >= 0.9


def test_sampled_rows_are_the_picked_rows_in_order():
    from skclust_ot._parallel import Shards

    rows = torch.arange(12.0).reshape(6, 2)
    picked = np.array([0, 3, 5])
    assert torch.equal(Shards(None, 6).sampled_rows(rows, picked), rows[[0, 3, 5]])


def _error_body(rank):
    X, _ = _blobs()
    local = X[:SHARD].copy() if rank == 0 else X[SHARD:].copy()
    if rank == 1:
        local[3, 2] = np.nan
    out = {}
    try:
        SP2OTClustering(distributed=True, **FIT).fit(local)
    except ValueError as exc:
        out["fit"] = str(exc)
    cost = torch.rand(5, 3, dtype=torch.float64)
    if rank == 0:
        cost[0, 0] = float("inf")
    try:
        p2ot_distributed(cost, 0.5)
    except ValueError as exc:
        out["solver"] = str(exc)
    # an invalid parameter on one rank only
    try:
        SP2OTClustering(distributed=True, **dict(FIT, epsilon=-1.0 if rank else 0.1)).fit(local)
    except ValueError as exc:
        out["param"] = str(exc)
    # the group still works afterwards: nobody is stuck in a collective
    out["after"] = Communicator().sizes(rank + 1)
    return out


def test_an_error_on_one_rank_is_raised_on_all(tmp_path):
    results = run_ranks(tmp_path, _error_body)
    _no_exceptions(results)
    assert "NaN" in results[1]["fit"]
    assert results[0]["fit"].startswith("rank 1 failed:") and "NaN" in results[0]["fit"]
    assert "NaN or inf" in results[0]["solver"]
    assert results[1]["solver"].startswith("rank 0 failed:")
    assert "epsilon" in results[1]["param"]
    assert results[0]["param"].startswith("rank 1 failed:") and "epsilon" in results[0]["param"]
    assert results[0]["after"] == results[1]["after"] == [1, 2]


class _FailOnRankOne(Callback):
    """Raises on rank 1 only, at the end of the second epoch (mid-training)."""

    def __init__(self, raised_at):
        self.raised_at = raised_at  # a file: when rank 1 raised (wall clock)

    def on_epoch_end(self, net, **kwargs):
        if dist.get_rank() == 1 and len(net.history) == 2:
            with open(self.raised_at, "w") as fh:
                fh.write(repr(time.time()))
            raise RuntimeError("boom on rank 1")


MID_TRAINING_TIMEOUT_S = 10


def _mid_training_error_body(rank, raised_at):
    import skclust_ot._defaults as defaults

    defaults.DISTRIBUTED_TIMEOUT_S = MID_TRAINING_TIMEOUT_S  # the default is 45 s
    X, _ = _blobs()
    local = X[:SHARD] if rank == 0 else X[SHARD:]
    start = time.monotonic()
    try:
        SP2OTClustering(distributed=True, callbacks=[_FailOnRankOne(raised_at)],
                        **FIT).fit(local)
        out = {"error": None}
    except RuntimeError as exc:
        out = {"error": str(exc), "cause": repr(exc.__cause__)}
    out["seconds"] = time.monotonic() - start
    out["caught_at"] = time.time()
    # the default group still works afterwards
    out["after"] = Communicator().sizes(rank + 1)
    return out


def test_an_error_on_one_rank_mid_training_reaches_the_others_within_the_timeout(tmp_path):
    raised_at = tmp_path / "raised_at"
    results = run_ranks(tmp_path, _mid_training_error_body, str(raised_at),
                        teardown_may_abort=True)
    _no_exceptions(results)
    assert results[1]["error"] == "boom on rank 1"
    # rank 0 waited in a collective over the training group, which rank 1
    # closed as it failed: rank 0's collective fails at once (not after the
    # training group's timeout, nor the default group's 240 s here, 30 min by
    # default) and rank 0 raises rank 1's error
    assert results[0]["error"] == "rank 1 failed during training: RuntimeError: boom on rank 1"
    assert results[0]["caught_at"] - float(raised_at.read_text()) < MID_TRAINING_TIMEOUT_S
    assert results[0]["seconds"] < 2 * MID_TRAINING_TIMEOUT_S + 20
    assert results[0]["after"] == results[1]["after"] == [1, 2]


def _abort_body(rank, when):
    if rank == 0 and when == "body":
        os.abort()
    if rank == 0 and when == "teardown":
        dist.barrier = os.abort  # this process only: dies in _entry's teardown
    return {"rank": rank}


@pytest.mark.parametrize("when", ["teardown", "body"])
def test_the_harness_tolerates_an_abort_only_in_teardown_and_only_when_asked(tmp_path, when):
    with pytest.raises(mp.ProcessExitedException, match="SIGABRT"):
        run_ranks(tmp_path / "strict", _abort_body, when)
    if when == "body":  # died before reporting: fails even when tolerated
        with pytest.raises(mp.ProcessExitedException, match="SIGABRT"):
            run_ranks(tmp_path / "tolerant", _abort_body, when, teardown_may_abort=True)
    else:
        results = run_ranks(tmp_path / "tolerant", _abort_body, when, teardown_may_abort=True)
        assert results == [{"rank": 0}, {"rank": 1}]


def test_distributed_without_process_group_says_what_to_do():
    X, _ = _blobs()
    with pytest.raises(ValueError, match="init_process_group"):
        SP2OTClustering(distributed=True, **FIT).fit(X)
    with pytest.raises(RuntimeError, match="init_process_group"):
        p2ot_distributed(torch.rand(4, 2), 0.5)


def test_neighbor_views_not_combinable_with_distributed(tmp_path):
    results = run_ranks(tmp_path, _fit_body, dict(FIT, neighbor_views=0.5))
    for res in results:
        assert "neighbor_views" in res["exception"][1]


# --------------------------------------------------------------------------- #
# pieces that need no process group
# --------------------------------------------------------------------------- #
def test_padded_shuffle_sampler():
    from skclust_ot.nn import PaddedShuffleSampler

    sampler = PaddedShuffleSampler(7, 17, seed=3)
    assert len(sampler) == 17
    first, second = list(sampler), list(sampler)
    for epoch in (first, second):
        assert len(epoch) == 17
        assert set(epoch) == set(range(7))  # every local row at least once
        assert max(np.bincount(epoch)) <= 3  # padded by whole permutations
    assert first != second  # a new order every epoch
    again = PaddedShuffleSampler(7, 17, seed=3)
    assert list(again) == first  # reproducible from the seed
    assert sorted(PaddedShuffleSampler(5, 5, seed=0)) == list(range(5))
