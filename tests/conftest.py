import pytest
import torch


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
