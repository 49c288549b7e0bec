import pytest
import torch
from sklearn.datasets import make_blobs


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip_cuda)


def pytest_configure(config):
    # The tests fit tiny problems, where torch's intra-op thread pool costs
    # more in synchronization than it gains (and oversubscribes a loaded
    # 2-core machine); one thread makes the suite several times faster.
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def blobs():
    """Three long-tailed blobs in 4-D: 120 / 40 / 15 points, 6 apart."""
    X, y = make_blobs(
        n_samples=[120, 40, 15], centers=[[0, 0, 0, 0], [6, 6, 0, 0], [0, 6, 6, 0]],
        cluster_std=1.0, random_state=0,
    )
    return X, y
