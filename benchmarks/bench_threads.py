"""BLAS threads in the solver's CPU loop: the default (one thread for small problems) against free.

On the CPU the P²OT loop runs in NumPy (OpenBLAS products on 256 KiB blocks)
and reduces some of its blocks with torch, so two thread pools take turns in
it. ``skclust_ot`` holds NumPy's BLAS to one thread while the loop runs
(``NumpyBackend.threads``); this benchmark measures that choice against
leaving BLAS at its own thread count, with torch on ``--threads`` threads, in
the same run and interleaved:

1. SP²OT solves (K = 100, a 10-NN graph, ``semantic_weight=0.02``, kl 0.1,
   rho 0.3) at N = 10,000 and 100,000, and a P²OT solve at N = 1,000,000;
   medians over ``--repeats`` runs;
2. default fits of ``SP2OTClustering(n_clusters=100)`` on the synthetic
   10,000 × 64 long-tailed blobs of ``benchmarks/_scale_common.py``, once per
   setting, with whether the labels are the same.

Usage::

    python benchmarks/bench_threads.py                 # ~4 min on 2 cores -> docs/threads_benchmark.md
    python benchmarks/bench_threads.py --quick --out /tmp/threads.md   # solves at 1e4 only, no fits
"""

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="torch threads (default: 2, or 1 on a 1-core machine)")
    parser.add_argument("--repeats", type=int, default=5, help="solves per setting (median)")
    parser.add_argument("--quick", action="store_true", help="N = 10,000 solves only, no fits")
    parser.add_argument("--out", default=str(ROOT / "docs" / "threads_benchmark.md"))
    return parser.parse_args(argv)


@contextlib.contextmanager
def blas(setting):
    """``"held"``: the package's default; ``"free"``: the loop leaves BLAS as it is."""
    from skclust_ot.ot._backend import NumpyBackend

    if setting == "held":
        yield
        return
    original = NumpyBackend.__dict__["threads"]  # the staticmethod itself
    NumpyBackend.threads = staticmethod(lambda n_entries: contextlib.nullcontext())
    try:
        yield
    finally:
        NumpyBackend.threads = original


def blas_threads():
    from threadpoolctl import threadpool_info

    found = sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})
    return ", ".join(map(str, found)) or "none found"


def solve_rows(repeats, quick):
    import torch

    from skclust_ot.ot import knn_graph, p2ot, sp2ot
    from skclust_ot.ot._backend import ONE_BLAS_THREAD_MAX_ENTRIES

    cases = [("SP2OT", 10_000)] + ([] if quick else [("SP2OT", 100_000), ("P2OT", 1_000_000)])
    rows = []
    for solver, n in cases:
        gen = torch.Generator().manual_seed(0)
        cost = -torch.log_softmax(3 * torch.randn(n, 100, generator=gen), dim=1)
        graph = knn_graph(torch.randn(n, 8, generator=gen), 10) if solver == "SP2OT" else None

        def run():
            if graph is None:
                return p2ot(cost, 0.3, epsilon=0.1, kl_weight=0.1)
            return sp2ot(cost, 0.3, graph, semantic_weight=0.02, epsilon=0.1, kl_weight=0.1,
                         mm_max_iter=10)

        times = {"held": [], "free": []}
        for setting in ("held", "free"):  # warm both paths once
            with blas(setting):
                run()
        for rep in range(repeats):
            for setting in (("held", "free") if rep % 2 == 0 else ("free", "held")):
                with blas(setting):
                    start = time.perf_counter()
                    run()
                    times[setting].append(time.perf_counter() - start)
        held, free = statistics.median(times["held"]), statistics.median(times["free"])
        default = "1 thread" if n * 100 <= ONE_BLAS_THREAD_MAX_ENTRIES else \
            "free (above the size limit: the two columns are the same setting)"
        rows.append((f"{solver} solve", f"{n:,} × 100", default, f"{held:.3f}", f"{free:.3f}",
                     f"{free / held:.2f}", f"median of {repeats}"))
        print(f"[threads] {solver} {n}: held {held:.3f} s, free {free:.3f} s", flush=True)
    return rows


def fit_rows():
    from _scale_common import make_data

    from skclust_ot import SP2OTClustering

    X, _ = make_data(10_000, 0, d=64)
    seconds, labels = {}, {}
    for setting in ("free", "held"):
        with blas(setting):
            start = time.perf_counter()
            labels[setting] = SP2OTClustering(n_clusters=100, random_state=0).fit_predict(X)
            seconds[setting] = time.perf_counter() - start
        print(f"[threads] fit 10,000 x 64 ({setting}): {seconds[setting]:.1f} s", flush=True)
    same = "same labels" if (labels["held"] == labels["free"]).all() else "labels differ"
    return [("default fit, K = 100", "10,000 × 64", "1 thread (every solve is 10,000 × 100)",
             f"{seconds['held']:.1f}",
             f"{seconds['free']:.1f}", f"{seconds['free'] / seconds['held']:.2f}",
             f"one fit each; {same}")]


def main(argv=None):
    args = parse_args(argv)
    import sklearn
    import torch

    torch.set_num_threads(args.threads)
    started = time.time()
    rows = solve_rows(args.repeats, args.quick)
    if not args.quick:
        rows += fit_rows()
    header = ("what", "size", "the default's BLAS in the loop", "default (s)",
              "BLAS free (s)", "free ÷ default", "runs")
    lines = [
        "# BLAS threads in the solver's CPU loop",
        "",
        "Generated by `benchmarks/bench_threads.py`; do not edit by hand.",
        "",
        f"- Command: `python benchmarks/bench_threads.py{' --quick' if args.quick else ''}`",
        f"- Date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}",
        f"- Machine: {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__} on "
        f"{args.threads} thread(s); NumPy's BLAS outside the loop: {blas_threads()} thread(s); "
        f"sklearn {sklearn.__version__}",
        f"- Total wall time: {(time.time() - started) / 60:.1f} min",
        "",
        "*Default*: the package as it is, which holds NumPy's BLAS to one thread while the "
        "loop of a problem of at most 2^24 entries (N × K) runs, restored afterwards, and "
        "leaves larger problems' BLAS as it is. *Free*: no problem's loop touches BLAS. The "
        "two settings alternate (ABBA), so both see the same load on a shared machine; a row "
        "where both are the same setting shows the noise of the measurement.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * 3 + ["---"]) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    print(f"[threads] wrote {args.out}")


if __name__ == "__main__":
    main()
