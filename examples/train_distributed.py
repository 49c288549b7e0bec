"""
Data-parallel training with torch.distributed
=============================================

Each process (rank) holds a block of the rows of a long-tailed subset of
scikit-learn's digits and calls ``fit`` on it with ``distributed=True``.
The network is trained with ``DistributedDataParallel`` and the SP²OT
pseudo-labels are solved over the rows of all ranks, so the model is the
one that a single process would train on all rows. Rank 0 reports the
clustering of all rows and saves the model.

Run it on CPUs with two processes::

    torchrun --nproc_per_node=2 examples/train_distributed.py

or, without torchrun, ``python examples/train_distributed.py``, which
starts the two processes itself. On GPUs, torchrun starts one process per
GPU (``--nproc_per_node=<number of GPUs>``) and the script uses NCCL.
``SKCLUST_OT_EXAMPLE_FAST=1`` trains for 2 epochs only, as the tests do; the
model goes to the folder in ``SKCLUST_OT_EXAMPLE_OUT`` (default: the current
folder).
"""

import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from skclust_ot import SP2OTClustering
from skclust_ot.datasets import load_digits_long_tailed
from skclust_ot.metrics import clustering_report

FAST = os.environ.get("SKCLUST_OT_EXAMPLE_FAST") == "1"
OUT = Path(os.environ.get("SKCLUST_OT_EXAMPLE_OUT", "."))


def train():
    rank, world_size = dist.get_rank(), dist.get_world_size()
    if dist.get_backend() == "nccl":
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
    else:
        device = "cpu"
        torch.set_num_threads(1)

    X, y = load_digits_long_tailed(random_state=0)
    blocks = np.array_split(np.arange(X.shape[0]), world_size)
    X_local = X[blocks[rank]]  # in practice each rank loads only its own rows

    est = SP2OTClustering(n_clusters=10, max_epochs=2 if FAST else 50, device=device,
                          distributed=True, random_state=0)
    est.fit(X_local)

    # labels_ holds the local rows; collect them on every rank, in rank order
    parts = [None] * world_size
    dist.all_gather_object(parts, est.labels_)
    if rank == 0:
        labels = np.concatenate(parts)
        report = clustering_report(y, labels)
        print(f"{world_size} ranks, {X.shape[0]} rows: balanced accuracy "
              f"{report['balanced_accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}, "
              f"NMI {report['nmi']:.3f}")
        # the model is the same on every rank and predicts without a process group
        assert np.array_equal(est.predict(X), labels)
        path = OUT / "sp2ot_distributed.pkl"
        with open(path, "wb") as fh:
            pickle.dump(est, fh)
        print(f"model saved to {path}")


def _run():
    try:
        train()
        # leave together: a rank that tears down its process group while
        # another still works (here rank 0 saving the model) can abort in gloo
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _spawned(rank, world_size, store):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world_size)
    _run()


if __name__ == "__main__":
    if "WORLD_SIZE" in os.environ:  # launched by torchrun
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        _run()
    else:
        with tempfile.TemporaryDirectory() as tmp:
            mp.spawn(_spawned, args=(2, os.path.join(tmp, "store")), nprocs=2)
