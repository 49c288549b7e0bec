"""Hyper-parameter search on a Dask cluster (joblib's ``"dask"`` backend).

Skipped unless ``distributed`` is installed (``pip install -e ".[dask]"``).
The recipe tested here is the one documented in ``docs/scaling.rst``:
process workers (``processes=True``), one task thread per worker, and the
torch thread count of each worker set through the nanny's environment.
"""

import contextlib
import os

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from skclust_ot import SP2OTClustering

distributed = pytest.importorskip("distributed")

# the schedulers' HTTP servers (no dashboard) ask for port 8787 first and
# move to a free port, with this warning, when another cluster holds it
pytestmark = pytest.mark.filterwarnings("ignore:Port .* is already in use:UserWarning")

N_WORKERS = 2
# the documented recipe: the cores, shared out between the worker processes
TORCH_THREADS = max(1, (os.cpu_count() or 1) // N_WORKERS)
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _restored_environ(unset=()):
    """Undo what starting a cluster writes into this process's environment.

    Dask's nanny exports ``distributed.nanny.pre-spawn-environ``
    (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``...) into the *parent*
    process before spawning each worker; left there, it would change the
    thread caps that loky gives the workers of other tests.
    """
    saved = dict(os.environ)
    for name in unset:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        for name in set(os.environ) - set(saved):
            del os.environ[name]
        os.environ.update(saved)


def _local_cluster(n_workers, env):
    return distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True,
        dashboard_address=None, env=env,
    )


def _torch_threads_in_task():
    # runs in a worker's task thread, where joblib's batches run
    import torch

    return (os.getpid(), torch.get_num_threads(),
            {name: os.environ.get(name) for name in THREAD_VARS})


@pytest.fixture(scope="module")
def client():
    env = {name: str(TORCH_THREADS) for name in THREAD_VARS}
    with _restored_environ():
        cluster = _local_cluster(N_WORKERS, env)
        dask_client = distributed.Client(cluster)
        try:
            dask_client.wait_for_workers(N_WORKERS, timeout=60)
            yield dask_client
        finally:
            dask_client.close()
            cluster.close()


def _grid(n_jobs):
    # the pid "score" records which process ran each fit (fit and score run
    # in the same call of sklearn's _fit_and_score); defined locally so it
    # travels to the workers by value
    def fit_pid(est, X_, y_=None):
        return float(os.getpid())

    return GridSearchCV(
        SP2OTClustering(max_epochs=3, random_state=0, device="cpu"),
        {"n_clusters": [2, 3]}, cv=2, n_jobs=n_jobs,
        scoring={"ari": "adjusted_rand_score", "pid": fit_pid}, refit="ari",
    )


def test_grid_search_runs_on_dask_workers(client, blobs):
    X, y = blobs
    worker_pids = set(client.run(os.getpid).values())
    assert len(worker_pids) == N_WORKERS and os.getpid() not in worker_pids

    grid = _grid(n_jobs=-1)
    with joblib.parallel_backend("dask"):
        grid.fit(X, y)

    results = grid.cv_results_
    assert len(results["params"]) == 2
    assert [p["n_clusters"] for p in results["params"]] == [2, 3]
    for split in range(2):
        assert np.all(np.isfinite(results[f"split{split}_test_ari"]))
    assert np.all(np.isfinite(results["mean_test_ari"]))
    # every fit ran in a Dask worker process, none in this one
    fit_pids = {int(pid) for split in range(2)
                for pid in results[f"split{split}_test_pid"]}
    assert fit_pids <= worker_pids, (fit_pids, worker_pids)

    # the remote fits are the same computation as local ones
    local = _grid(n_jobs=None).fit(X, y)
    for split in range(2):
        np.testing.assert_allclose(
            results[f"split{split}_test_ari"], local.cv_results_[f"split{split}_test_ari"],
            atol=1e-12,
        )
    assert {int(p) for p in local.cv_results_["split0_test_pid"]} == {os.getpid()}

    # refit (in this process) on the whole data with the best candidate
    assert grid.best_params_ == {"n_clusters": 3}
    best = grid.best_estimator_
    assert best.n_iter_ == 3 and best.labels_.shape == (len(X),)
    labels = best.predict(X)
    assert labels.shape == (len(X),) and set(np.unique(labels)) <= {0, 1, 2}
    assert np.isfinite(grid.best_score_)


def test_torch_threads_in_dask_workers(client):
    # the recipe: torch in each worker process gets cpu_count // n_workers
    # threads, so the workers together do not oversubscribe the cores
    futures = [client.submit(_torch_threads_in_task, pure=False, workers=[address])
               for address in client.scheduler_info()["workers"]]
    for pid, n_threads, env in client.gather(futures):
        assert pid != os.getpid()
        assert n_threads == TORCH_THREADS
        assert env == {name: str(TORCH_THREADS) for name in THREAD_VARS}


@pytest.mark.parametrize("env, expected", [
    # joblib's dask backend sets no cap, but the nanny spawns each worker
    # with distributed.nanny.pre-spawn-environ: OMP/MKL/OPENBLAS = 1
    (None, 1),
    # torch takes MKL_NUM_THREADS over OMP_NUM_THREADS: raising only
    # OMP_NUM_THREADS leaves the nanny's MKL_NUM_THREADS=1 in charge
    ({"OMP_NUM_THREADS": "2"}, 1),
    ({"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}, 2),
])
def test_nanny_environment_sets_torch_threads(env, expected):
    # unset in this process, so the result does not depend on the shell
    with _restored_environ(unset=THREAD_VARS):
        with _local_cluster(1, env) as cluster, distributed.Client(cluster) as c:
            pid, n_threads, _ = c.submit(_torch_threads_in_task, pure=False).result()
    assert pid != os.getpid()
    assert n_threads == expected
