"""Over-clustering the spectral start: partitions only, no training.

Compares three partitions of the same spectral embedding (the kNN graph the
estimator's start sees: 10 neighbours of the globally standardized rows):

- ``k-way``: spectral clustering's own (k-means with K on the leading K
  components), the start before the sixth session of 2026-12-01;
- ``always merged``: k-means with ``n_fine = overcluster_size(n, K)`` fine
  clusters on all components, merged along the graph by edge density;
- ``ratio-cut guard``: the merged partition where its ratio cut on the graph
  (cut edges per sample, summed over clusters) is the smaller, else k-way:
  the spectral start of the sixth session of 2026-12-01;
- ``silhouette guard``: the merged partition where its mean silhouette in
  the input space is the larger (tried in the first session of 2026-12-02
  and dropped: it chose the worse partition on Fashion-MNIST at 16k-28k rows);
- ``start``: the package's spectral start, which keeps the merged partition
  only where both referees prefer it.

On one half of the quality benchmark's cases (the tuning half by default)
and on two families of seeded synthetic blobs with a tail smaller than the
graph's k: three 4-D blobs (40-119 / 15-39 / 4-11 rows) and two 4-D blobs
(100-399 / 5-24 rows, centres 4 apart). For every family it prints the mean
balanced accuracy / macro-F1 (per-case means first on the real cases) and,
for the synthetic ones, on how many draws a partition is worse or better
than k-way by more than 0.01 BA.

With ``--estimator`` it also fits ``SP2OTClustering`` (defaults, only
``n_clusters`` and ``random_state``) with ``init="spectral"`` (the default),
``"spectral_kway"`` and ``"kmeans"`` on every synthetic draw.

Usage::

    python benchmarks/bench_start_merge.py --jobs 2               # about a minute on 2 cores
    python benchmarks/bench_start_merge.py --jobs 2 --estimator   # about three more

The table and what was learned are in ``docs/design.md`` ("Over-clustering
the spectral start").
"""

import argparse
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cases import CASES, prepare_embeddings, split_halves  # noqa: E402

from skclust_ot import SP2OTClustering  # noqa: E402
from skclust_ot._start import (  # noqa: E402
    StartData,
    graph_adjacency,
    kmeans_labels,
    merge_by_edge_density,
    overcluster_size,
    ratio_cut,
    silhouette,
    spectral_embedding,
    spectral_start,
)
from skclust_ot.metrics import clustering_report  # noqa: E402
from skclust_ot.ot import knn_graph  # noqa: E402

PARTITIONS = ("k-way", "always merged", "ratio-cut guard", "silhouette guard", "start")
INITS = ("spectral", "spectral_kway", "kmeans")


def partitions(X, y, seed):
    """BA and macro-F1 of the three partitions of one data set."""
    n_clusters = int(y.max()) + 1
    scaled = (X - X.mean(0)) / X.std()  # the estimator's standardize="global"
    features = torch.from_numpy(scaled.astype(np.float32))
    graph = knn_graph(features, min(10, len(y) - 1), method="exact").coalesce()
    n_fine = overcluster_size(len(y), n_clusters)
    embedding = spectral_embedding(graph, n_fine, seed)
    adjacency = graph_adjacency(graph)
    k_way = kmeans_labels(torch.from_numpy(embedding[:, :n_clusters]), n_clusters, seed)
    merged = merge_by_edge_density(kmeans_labels(torch.from_numpy(embedding), n_fine, seed),
                                   adjacency, n_clusters)
    labels = {
        "k-way": k_way,
        "always merged": merged,
        "ratio-cut guard": merged if ratio_cut(merged, adjacency) < ratio_cut(k_way, adjacency)
        else k_way,
        "silhouette guard": merged if silhouette(features, merged, seed)
        > silhouette(features, k_way, seed) else k_way,
        "start": spectral_start(StartData(features, graph), n_clusters, seed).labels,
    }
    out = {}
    for name, lab in labels.items():
        report = clustering_report(y, lab)
        out[name] = (report["balanced_accuracy"], report["macro_f1"])
    return out


def blobs(family, seed):
    """One seeded synthetic data set of a family ("three blobs" or "two blobs")."""
    rng = np.random.default_rng(seed)
    if family == "three blobs":
        sizes = [int(rng.integers(40, 120)), int(rng.integers(15, 40)), int(rng.integers(4, 12))]
        centers = [[0, 0, 0, 0], [6, 6, 0, 0], [0, 6, 6, 0]]
    else:
        sizes = [int(rng.integers(100, 400)), int(rng.integers(5, 25))]
        centers = [[0, 0, 0, 0], [4, 0, 0, 0]]
    return make_blobs(n_samples=sizes, centers=centers, cluster_std=1.0, random_state=seed)


def run(kind, name, seed):
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    with threadpool_limits(1):
        X, y = (CASES[name](seed)[:2] if kind == "case" else blobs(name, seed))
        return {"kind": kind, "family": "real cases" if kind == "case" else name,
                "case": name if kind == "case" else f"{name} {seed}", "seed": seed,
                **partitions(X, y, seed)}


def fit(family, seed):
    """BA and macro-F1 of the estimator with each start on one synthetic draw."""
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    X, y = blobs(family, seed)
    out = {"family": family, "case": f"{family} {seed}"}
    with threadpool_limits(1):
        for init in INITS:
            labels = SP2OTClustering(int(y.max()) + 1, init=init,
                                     random_state=seed).fit_predict(X)
            report = clustering_report(y, labels)
            out[init] = (report["balanced_accuracy"], report["macro_f1"])
    return out


def summarize_fits(fits):
    """Markdown table of the estimator's starts on the synthetic draws."""
    lines = ["| data | init | BA | F1 | worse / better than spectral_kway (BA ± 0.01) |",
             "|---|---|---:|---:|---:|"]
    for family in dict.fromkeys(r["family"] for r in fits):
        mine = [r for r in fits if r["family"] == family]
        for init in INITS:
            ba, f1 = np.mean([r[init] for r in mine], axis=0)
            worse = sum(r[init][0] < r["spectral_kway"][0] - 0.01 for r in mine)
            better = sum(r[init][0] > r["spectral_kway"][0] + 0.01 for r in mine)
            lines.append(f"| {family} | {init} | {ba:.3f} | {f1:.3f} | "
                         f"{worse} / {better} of {len(mine)} |")
    return "\n".join(lines)


def summarize(runs):
    """Markdown table: one row per family and partition."""
    lines = ["| data | partition | BA | F1 | worse / better than k-way (BA ± 0.01) |",
             "|---|---|---:|---:|---:|"]
    for family in dict.fromkeys(r["family"] for r in runs):
        mine = [r for r in runs if r["family"] == family]
        cases = list(dict.fromkeys(r["case"] for r in mine))
        for name in PARTITIONS:
            means = [np.mean([r[name] for r in mine if r["case"] == c], axis=0) for c in cases]
            ba, f1 = np.mean(means, axis=0)
            worse = sum(r[name][0] < r["k-way"][0] - 0.01 for r in mine)
            better = sum(r[name][0] > r["k-way"][0] + 0.01 for r in mine)
            counts = "" if family == "real cases" else f"{worse} / {better} of {len(mine)}"
            lines.append(f"| {family} | {name} | {ba:.3f} | {f1:.3f} | {counts} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--half", choices=("tuning", "validation"), default="tuning")
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the real cases")
    parser.add_argument("--draws", type=int, default=40, help="synthetic data sets per family")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--estimator", action="store_true",
                        help="also fit the estimator with each start on the synthetic draws")
    args = parser.parse_args(argv)
    names = split_halves()[args.half]
    prepare_embeddings(names)
    jobs = [("case", n, int(s)) for n in names for s in args.seeds.split(",")]
    jobs += [("blobs", family, s) for family in ("three blobs", "two blobs")
             for s in range(args.draws)]
    runs = Parallel(n_jobs=args.jobs)(delayed(run)(*job) for job in jobs)
    print(summarize(runs))
    if args.estimator:
        fits = Parallel(n_jobs=args.jobs)(delayed(fit)(family, s)
                                          for family in ("three blobs", "two blobs")
                                          for s in range(args.draws))
        print()
        print(summarize_fits(fits))


if __name__ == "__main__":
    main()
