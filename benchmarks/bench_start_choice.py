"""Choosing the start from the data: unsupervised criteria between the two starts.

Every run of one half of the quality benchmark's cases (``cases.split_halves``)
is fitted twice with the defaults, once with ``init="spectral"`` and once with
``init="kmeans"``; label-free criteria of each fit (and of the two start
partitions before training) then pick one fit per run, and the table shows the
mean balanced accuracy / macro-F1 each rule would give, beside always-spectral
(the default), always-k-means and the per-run oracle. Run it on the tuning half
only (the default): a rule chosen here is then checked once on the validation
half with ``bench_quality.py``.

Usage::

    python benchmarks/bench_start_choice.py --jobs 2            # tuning half, seeds 0,1,2
    python benchmarks/bench_start_choice.py --cases glass_fgl --seeds 0

Measured on the tuning half in the fifth session of 2026-12-01; the table and
what was learned are in ``docs/design.md`` ("Choosing the start from the data").
"""

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.metrics import silhouette_score  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cases import CASES, prepare_embeddings, split_halves  # noqa: E402

from skclust_ot import SP2OTClustering  # noqa: E402
from skclust_ot._start import StartData, kmeans_start, spectral_start  # noqa: E402
from skclust_ot.metrics import clustering_report, embedding_silhouette_score  # noqa: E402
from skclust_ot.ot import knn_graph  # noqa: E402

INITS = ("spectral", "kmeans")


def _silhouette(X, labels):
    return float(silhouette_score(X, labels)) if len(set(labels)) > 1 else -1.0


def run_one(name, seed):
    """Both starts' partitions and trained fits of one (case, seed), with their criteria."""
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    with threadpool_limits(1):
        X, y, _ = CASES[name](seed)
        K = int(y.max() + 1)
        # the space the estimator's start sees (standardize="global")
        scaled = (X - X.mean(0)) / X.std()
        features = torch.from_numpy(scaled.astype(np.float32))
        graph = knn_graph(features, min(10, len(y) - 1), method="exact").coalesce()
        data = StartData(features, graph)
        partitions = {"spectral": spectral_start(data, K, seed).labels,
                      "kmeans": kmeans_start(data, K, seed).labels}
        out = {"case": name, "seed": seed}
        for init in INITS:
            est = SP2OTClustering(n_clusters=K, random_state=seed, init=init)
            labels = est.fit_predict(X)
            report = clustering_report(y, labels)
            out[init] = {
                "ba": report["balanced_accuracy"], "f1": report["macro_f1"],
                "score": est.score(X), "embedding_silhouette": embedding_silhouette_score(est, X),
                "last_loss": float(est.history_[-1, "train_loss"]),
                "trained_input_silhouette": _silhouette(scaled, labels),
                "start_input_silhouette": _silhouette(scaled, partitions[init]),
            }
    return out


def rules():
    """Name -> function(run) -> True where the rule picks the k-means fit."""
    def higher(key):
        return lambda r: r["kmeans"][key] > r["spectral"][key]

    table = {
        "always spectral (the default)": lambda r: False,
        "always k-means": lambda r: True,
        "score of the trained model (higher)": higher("score"),
        "embedding silhouette (higher)": higher("embedding_silhouette"),
        "last training loss (lower)": lambda r: r["kmeans"]["last_loss"] < r["spectral"]["last_loss"],
        "input silhouette of the trained labels (higher)": higher("trained_input_silhouette"),
    }
    for ratio in (0.5, 0.6, 0.8):
        table[f"k-means if the spectral start's input silhouette < {ratio} x k-means's"] = (
            lambda r, t=ratio: r["spectral"]["start_input_silhouette"]
            < t * r["kmeans"]["start_input_silhouette"])
    return table


def summarize(runs):
    """Markdown table of every rule: per-case means first, then their mean."""
    cases = sorted({r["case"] for r in runs})
    lines = ["| rule | BA | F1 | runs given k-means | cases given k-means in any run |",
             "|---|---:|---:|---:|---|"]

    def case_mean(pick, metric):
        return np.mean([np.mean([pick(r)[metric] for r in runs if r["case"] == c])
                        for c in cases])

    for name, use_kmeans in rules().items():
        def pick(r, use_kmeans=use_kmeans):
            return r["kmeans"] if use_kmeans(r) else r["spectral"]
        switched = sorted({r["case"] for r in runs if use_kmeans(r)})
        shown = ", ".join(switched) if len(switched) < len(cases) else "all"
        lines.append(f"| {name} | {case_mean(pick, 'ba'):.3f} | {case_mean(pick, 'f1'):.3f} | "
                     f"{sum(map(use_kmeans, runs))} / {len(runs)} | {shown} |")
    oracle_ba = np.mean([np.mean([max(r["kmeans"]["ba"], r["spectral"]["ba"])
                                  for r in runs if r["case"] == c]) for c in cases])
    lines.append(f"| oracle (the better fit of each run, by BA) | {oracle_ba:.3f} | | | |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--half", choices=("tuning", "validation"), default="tuning")
    parser.add_argument("--cases", default=None, help="comma-separated (default: the half)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the raw runs here")
    args = parser.parse_args(argv)
    names = args.cases.split(",") if args.cases else split_halves()[args.half]
    seeds = [int(s) for s in args.seeds.split(",")]
    prepare_embeddings(names)
    runs = Parallel(n_jobs=args.jobs)(delayed(run_one)(n, s) for n in names for s in seeds)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    print(summarize(runs))


if __name__ == "__main__":
    main()
