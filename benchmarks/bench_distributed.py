"""A large distributed fit on 2 gloo CPU processes: what a rank holds and how long it takes.

Long-tailed Gaussian blobs (K = 20, ratio 10), split in two shards; one fit
with the defaults (above 20,000 rows each rank gathers only the 20,000
landmarks) and one with ``semantic_weight=0.02`` (the graph of all rows, so
every rank gathers every row). Prints the fit time (the slower rank), each
rank's peak RSS and the ARI of the labels of all rows against the truth.

Usage::

    python benchmarks/bench_distributed.py                  # 60,000 x 128, 20 epochs
    python benchmarks/bench_distributed.py --rows 200000 --dim 64
"""

import argparse
import datetime
import json
import resource
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def blobs(n_rows, dim, n_clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    sizes = 10.0 ** (-np.arange(n_clusters) / (n_clusters - 1))
    sizes = np.maximum((sizes * n_rows / sizes.sum()).astype(int), 1)
    centres = 4.0 * rng.standard_normal((n_clusters, dim))
    X = np.vstack([c + rng.standard_normal((n, dim)) for c, n in zip(centres, sizes)])
    y = np.repeat(np.arange(n_clusters), sizes)
    order = rng.permutation(len(y))
    return X[order].astype(np.float32), y[order]


def _rank(rank, store, args, params, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=900))
    from skclust_ot import SP2OTClustering

    X, y = blobs(args.rows, args.dim)
    shard = np.array_split(np.arange(len(y)), WORLD)[rank]
    local = X[shard].copy()
    del X
    start = time.perf_counter()
    est = SP2OTClustering(n_clusters=int(y.max()) + 1, random_state=0, distributed=True,
                          max_epochs=args.epochs, **params).fit(local)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(f"{out}/rank{rank}.json", "w") as fh:
        json.dump({"labels": est.labels_.tolist(), "seconds": seconds, "peak_mb": peak_mb}, fh)
    dist.barrier()
    dist.destroy_process_group()


def main(argv=None):
    from sklearn.metrics import adjusted_rand_score

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    _, y = blobs(args.rows, args.dim)
    print(f"{args.rows} x {args.dim} float32: {args.rows * args.dim * 4 / 2**20:.0f} MB in all, "
          f"{args.epochs} epochs, {WORLD} ranks")
    print("| fit | s | peak RSS per rank (MB) | ARI |\n|---|---:|---:|---:|")
    for name, params in (("defaults (landmarks only)", {}),
                         ("semantic_weight=0.02 (every row)", {"semantic_weight": 0.02})):
        out = tempfile.mkdtemp()
        mp.start_processes(_rank, args=(f"{out}/store", args, params, out), nprocs=WORLD,
                           start_method="spawn")
        ranks = [json.load(open(f"{out}/rank{r}.json")) for r in range(WORLD)]
        labels = np.concatenate([r["labels"] for r in ranks])
        peaks = " / ".join(f"{r['peak_mb']:.0f}" for r in ranks)
        print(f"| {name} | {max(r['seconds'] for r in ranks):.1f} | {peaks} | "
              f"{adjusted_rand_score(y, labels):.3f} |")


if __name__ == "__main__":
    main()
