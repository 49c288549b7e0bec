"""kNN graph at scale: build time, peak memory and recall of five libraries.

Cases (float32, built once and cached under ``benchmarks/.cache``):

- ``synthetic``: 1e5 x 384 clustered set, the target size of issue #14. A
  Gaussian mixture of 100 components with long-tailed sizes (proportional to
  ``1 / rank**0.8``, seed 0); each component is its mean plus a 16-d Gaussian
  latent mapped by its own random 16 x 384 loading, plus isotropic noise
  (sd 0.1), so that it has a low intrinsic dimension like real embeddings.
- ``fashion``: the 70,000 Fashion-MNIST images (train + test) of Debian's
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), 784
  pixels / 255.

Methods (threads: 2 everywhere, ``OMP_NUM_THREADS=2`` plus each library's own
setting):

- ``torch_exact``: ``skclust_ot.ot.knn_graph(method="exact")`` (the chunked
  exact torch path). Its neighbours are the ground truth, cached on disk.
- ``sklearn_exact``: ``NearestNeighbors(algorithm="brute", n_jobs=2)``.
- ``faiss_ivf``: faiss ``IndexIVFFlat``, ``nlist = 4 sqrt(N)``, 10 k-means
  iterations, ``nprobe`` from ``--nprobe``.
- ``faiss_hnsw``: faiss ``IndexHNSWFlat`` (M = 32, efConstruction = 40,
  efSearch = 2k + 16).
- ``hnswlib``: M = 16, ef_construction = 100, ef = 2k + 16.
- ``pynndescent``: ``NNDescent(n_neighbors=k + 1, random_state=0, n_jobs=2)``,
  timed after a warm-up on 2,000 rows in the same process (numba compiles on
  the first call; that compile time is reported separately).
- ``knn_graph_approx``: ``skclust_ot.ot.knn_graph(method="approximate")``, the
  package's approximate path end to end (sparse graph included).

Every run is a fresh subprocess that loads the data, resets the peak-RSS
high-water mark (``/proc/self/clear_refs``), builds the neighbours, and reports
the wall time and the peak extra memory (``VmHWM`` at the end minus ``VmRSS``
after loading the data). The neighbours of all points (self excluded) are
compared with the exact ones: recall@k = mean over rows of
``|approximate ∩ exact| / k``. Results accumulate in
``benchmarks/.cache/knn_results.json``; the table is rendered from it.

Usage::

    python benchmarks/bench_knn.py                         # everything (about 20 min on 2 cores)
    python benchmarks/bench_knn.py --methods faiss_ivf --cases synthetic --k 10
    python benchmarks/bench_knn.py --sweep                 # exact vs approximate, N = 2e3 ... 5e4
    python benchmarks/bench_knn.py --render-only           # re-write docs/knn_benchmark.md
"""

import argparse
import datetime
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
THREADS = int(os.environ["OMP_NUM_THREADS"])

import numpy as np  # noqa: E402

from _scale_common import _reset_peak, _status  # noqa: E402 -- Linux peak-memory helpers

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
RESULTS = CACHE / "knn_results.json"
FASHION = Path("/usr/share/datasets/fashion-mnist")
METHODS = ["torch_exact", "sklearn_exact", "faiss_ivf", "faiss_hnsw", "hnswlib",
           "pynndescent", "knn_graph_approx"]
EXACT = {"torch_exact", "sklearn_exact"}
CASES = ["synthetic", "fashion"]
K_MAX = 20
SLOW_S = 40.0  # methods slower than this run once


# ----------------------------------------------------------------------------- data
def synthetic(n=100_000, d=384, n_components=100, latent=16, seed=0):
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_components + 1) ** 0.8
    sizes = np.floor(weights / weights.sum() * n).astype(int)
    sizes[: n - sizes.sum()] += 1
    parts = []
    for size in sizes:
        mean = rng.normal(size=d)
        loading = rng.normal(scale=0.5, size=(latent, d))
        z = rng.normal(size=(size, latent))
        parts.append(mean + z @ loading + rng.normal(scale=0.1, size=(size, d)))
    x = np.concatenate(parts).astype(np.float32)
    return x[rng.permutation(n)]


def _idx_images(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    n, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows * cols)


def fashion():
    parts = [_idx_images(FASHION / f"{name}-images-idx3-ubyte.gz")
             for name in ("train", "t10k")]
    return (np.concatenate(parts).astype(np.float32) / 255.0)


def load(case, n=None):
    path = CACHE / f"knn_{case}.npy"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, synthetic() if case == "synthetic" else fashion())
    x = np.load(path)
    return np.ascontiguousarray(x[:n]) if n else x


# ----------------------------------------------------------------------------- methods
def _rows_from_graph(graph, n, k):
    """(n, k) neighbour indices, nearest first, of a knn_graph result."""
    cols = graph.indices()[1].reshape(n, k).numpy()
    weights = graph.values().reshape(n, k).double().numpy()
    order = np.argsort(-weights, axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


def _drop_self(idx):
    n = idx.shape[0]
    self_mask = idx == np.arange(n)[:, None]
    no_self = ~self_mask.any(axis=1)
    self_mask[no_self, -1] = True
    return idx[~self_mask].reshape(n, idx.shape[1] - 1)


def build(method, x, k, nprobe):
    n, d = x.shape
    notes = {}
    if method in ("torch_exact", "knn_graph_approx"):
        import torch

        from skclust_ot.ot import knn_graph
        torch.set_num_threads(THREADS)
        if method == "knn_graph_approx":
            import faiss  # noqa: F401  (imported before the clock, as for the other libraries)
        kind = "exact" if method == "torch_exact" else "approximate"
        start = time.perf_counter()
        graph = knn_graph(torch.from_numpy(x), k, method=kind, random_state=0)
        seconds = time.perf_counter() - start
        return seconds, _rows_from_graph(graph, n, k), notes
    if method == "sklearn_exact":
        from sklearn.neighbors import NearestNeighbors
        start = time.perf_counter()
        nn = NearestNeighbors(n_neighbors=k, algorithm="brute", n_jobs=THREADS).fit(x)
        idx = nn.kneighbors(return_distance=False)
        return time.perf_counter() - start, idx, notes
    if method.startswith("faiss"):
        import faiss
        faiss.omp_set_num_threads(THREADS)
        start = time.perf_counter()
        if method == "faiss_ivf":
            nlist = max(1, min(int(round(4 * np.sqrt(n))), n // 39))
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
            index.cp.niter = 10
            index.cp.seed = 0
            index.train(x)
            index.add(x)
            index.nprobe = nprobe
            notes = {"nlist": nlist, "nprobe": nprobe}
        else:
            index = faiss.IndexHNSWFlat(d, 32)
            index.hnsw.efConstruction = 40
            index.add(x)
            index.hnsw.efSearch = 2 * k + 16
        _, idx = index.search(x, k + 1)
        return time.perf_counter() - start, _drop_self(idx), notes
    if method == "hnswlib":
        import hnswlib
        start = time.perf_counter()
        index = hnswlib.Index(space="l2", dim=d)
        index.init_index(max_elements=n, M=16, ef_construction=100, random_seed=0)
        index.set_num_threads(THREADS)
        index.add_items(x, np.arange(n), num_threads=THREADS)
        index.set_ef(2 * k + 16)
        idx, _ = index.knn_query(x, k=k + 1, num_threads=THREADS)
        return time.perf_counter() - start, _drop_self(idx.astype(np.int64)), notes
    if method == "pynndescent":
        from pynndescent import NNDescent
        start = time.perf_counter()
        NNDescent(x[:2000], n_neighbors=k + 1, random_state=0, n_jobs=THREADS).neighbor_graph
        notes = {"jit_warmup_s": round(time.perf_counter() - start, 1)}
        _reset_peak()
        start = time.perf_counter()
        idx, _ = NNDescent(x, n_neighbors=k + 1, random_state=0, n_jobs=THREADS).neighbor_graph
        return time.perf_counter() - start, _drop_self(idx), notes
    raise ValueError(method)


def worker(method, case, k, n, nprobe, out):
    x = load(case, n)
    _reset_peak()
    baseline = _status()["VmRSS"]
    seconds, idx, notes = build(method, x, k, nprobe)
    peak = (_status()["VmHWM"] - baseline) * 1024  # KiB -> bytes
    np.save(out, np.asarray(idx, dtype=np.int64))
    print(json.dumps({"seconds": seconds, "peak_extra_bytes": peak, "notes": notes}))


# ----------------------------------------------------------------------------- driver
def exact_neighbours(case, n=None):
    """Exact (n, K_MAX) neighbours, nearest first; computed once, cached."""
    path = CACHE / f"knn_exact_{case}_{n or 'all'}_k{K_MAX}.npy"
    if path.exists():
        return np.load(path), None
    record = run_one("torch_exact", case, K_MAX, n, nprobe=0)
    idx = np.load(record.pop("_out"))
    np.save(path, idx)
    return idx, record


def run_one(method, case, k, n, nprobe):
    out = CACHE / f"knn_out_{method}_{case}_{k}.npy"
    cmd = [sys.executable, __file__, "--worker", method, case, str(k), str(n or 0),
           str(nprobe), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record["_out"] = str(out)
    return record


def recall(idx, exact, k):
    exact = exact[:, :k]
    hits = sum(len(set(a) & set(b)) for a, b in zip(idx.tolist(), exact.tolist()))
    return hits / exact.size


def load_results():
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


def save_results(results):
    RESULTS.write_text(json.dumps(results, indent=1))


def run(methods, cases, ks, runs, nprobe, n):
    results = load_results()
    for case in cases:
        exact, first = exact_neighbours(case, n)
        for k in sorted(set(ks) | ({K_MAX} if EXACT & set(methods) else set())):
            for method in methods:
                if method in EXACT and k != K_MAX:
                    continue  # the exact cost does not depend on k (one top-k per chunk)
                if method not in EXACT and k not in ks:
                    continue
                reps = 1 if method in EXACT else runs
                records = []
                if method == "torch_exact" and k == K_MAX and first is not None:
                    records.append(first)
                    reps -= 1
                for _ in range(reps):
                    records.append(run_one(method, case, k, n, nprobe))
                    if "error" in records[-1] or records[-1]["seconds"] > SLOW_S:
                        break  # one run of a slow method: the time budget goes to coverage
                errors = [r["error"] for r in records if "error" in r]
                entry = {"method": method, "case": case, "k": k, "n": n or len(exact),
                         "threads": THREADS, "nprobe": nprobe if method == "faiss_ivf" else None}
                if errors:
                    entry["error"] = errors[0]
                else:
                    out = records[-1].get("_out")
                    idx = np.load(out) if out else exact[:, :k]
                    entry.update(
                        runs=len(records),
                        seconds=[round(r["seconds"], 2) for r in records],
                        peak_extra_mib=round(max(r["peak_extra_bytes"] for r in records) / 2**20),
                        recall=round(recall(idx, exact, k), 4),
                        notes=records[-1]["notes"])
                print(json.dumps(entry), flush=True)
                results = [r for r in results if not (
                    r["method"] == entry["method"] and r.get("case") == case and r["k"] == k
                    and r["n"] == entry["n"] and r.get("nprobe") == entry["nprobe"])]
                results.append(entry)
                save_results(results)


def sweep(sizes, k, nprobe):
    """Exact vs approximate knn_graph time on the first N synthetic rows."""
    results = load_results()
    for n in sizes:
        for method in ("torch_exact", "knn_graph_approx"):
            rec = [run_one(method, "synthetic", k, n, nprobe) for _ in range(2)]
            entry = {"sweep": True, "method": method, "n": n, "k": k,
                     "seconds": [round(r["seconds"], 2) for r in rec],
                     "peak_extra_mib": round(max(r["peak_extra_bytes"] for r in rec) / 2**20)}
            print(json.dumps(entry), flush=True)
            results = [r for r in results if not (
                r.get("sweep") and r["method"] == method and r["n"] == n and r["k"] == k)]
            results.append(entry)
    save_results(results)


def render(path):
    results = load_results()
    lines = ["| case | N × d | k | method | runs | build time (s), median | peak extra memory (MiB) "
             "| recall@k | notes |", "|---|---|---:|---|---:|---:|---:|---:|---|"]
    dims = {"synthetic": 384, "fashion": 784}
    main = [r for r in results if not r.get("sweep")]
    main.sort(key=lambda r: (CASES.index(r["case"]), r["k"], METHODS.index(r["method"])))
    for r in main:
        shape = f"{r['n']:,} × {dims[r['case']]}"
        if "error" in r:
            lines.append(f"| {r['case']} | {shape} | {r['k']} | {r['method']} | – | – | – | – "
                         f"| did not run: {r['error']} |")
            continue
        notes = ", ".join(f"{a}={b}" for a, b in (r.get("notes") or {}).items())
        if r["method"] in EXACT:
            notes = (notes + "; " if notes else "") + "exact (reference)"
        lines.append(
            f"| {r['case']} | {shape} | {r['k']} | {r['method']} | {r['runs']} "
            f"| {statistics.median(r['seconds']):.1f} | {r['peak_extra_mib']} "
            f"| {r['recall']:.3f} | {notes} |")
    table = "\n".join(lines)
    sweep_rows = sorted((r for r in results if r.get("sweep")), key=lambda r: (r["n"], r["method"]))
    sweep_lines = ["| N (synthetic, d = 384, k = 20) | method | time (s), median of 2 "
                   "| peak extra memory (MiB) |", "|---:|---|---:|---:|"]
    for r in sweep_rows:
        sweep_lines.append(f"| {r['n']:,} | {r['method']} | {statistics.median(r['seconds']):.2f} "
                           f"| {r['peak_extra_mib']} |")
    print(table)
    print()
    print("\n".join(sweep_lines))
    if path:
        template = Path(path).read_text() if Path(path).exists() else None
        body = _document(table, "\n".join(sweep_lines))
        if template and "<!-- table -->" in template:
            start = template.index("<!-- table -->")
            end = template.index("<!-- /sweep -->") + len("<!-- /sweep -->")
            body = template[:start] + _tables(table, "\n".join(sweep_lines)) + template[end:]
        Path(path).write_text(body)


def _tables(table, sweep_table):
    return ("<!-- table -->\n" + table + "\n<!-- /table -->\n\n"
            "Exact versus approximate `knn_graph` on the first N rows of the synthetic set:\n\n"
            "<!-- sweep -->\n" + sweep_table + "\n<!-- /sweep -->")


def _document(table, sweep_table):
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    return (f"---\norphan: true\n---\n\n# kNN graph benchmark\n\n"
            f"`python benchmarks/bench_knn.py` on {datetime.date.today()}, {machine}, "
            f"{THREADS} threads.\n\n" + _tables(table, sweep_table) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--k", default="10,20")
    parser.add_argument("--runs", type=int, default=2,
                        help=f"runs per approximate method (1 when a run takes > {SLOW_S:.0f} s)")
    parser.add_argument("--nprobe", type=int, default=24, help="faiss_ivf lists probed")
    parser.add_argument("--n", type=int, default=0, help="first N rows only (0: all)")
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "docs" / "knn_benchmark.md"))
    args = parser.parse_args()
    if args.worker:
        method, case, k, n, nprobe, out = args.worker
        worker(method, case, int(k), int(n) or None, int(nprobe), out)
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.sweep:
        sweep([2000, 5000, 10000, 20000, 50000], 20, args.nprobe)
    elif not args.render_only:
        run(args.methods.split(","), args.cases.split(","), [int(k) for k in args.k.split(",")],
            args.runs, args.nprobe, args.n or None)
    render(args.out if not args.n else None)


if __name__ == "__main__":
    main()
