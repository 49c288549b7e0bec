"""Peak memory of predict / predict_proba on a large input (chunked inference).

Each measurement runs in a fresh subprocess; a thread samples the resident
set size (/proc/self/statm) every 2 ms during the call, and the table reports
the peak growth over the size just before the call, next to the input's and
the output's own sizes. The model is fitted on a small sample of the same distribution.

    python benchmarks/bench_predict_memory.py [--n 1000000] [--d 64]
"""

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, os, sys, threading, time
import numpy as np, torch
torch.set_num_threads(1)
from skclust_ot import SP2OTClustering
n, d, method = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
X = rng.normal(size=(n, d)).astype(np.float32)
est = SP2OTClustering(n_clusters=20, max_epochs=2, random_state=0).fit(X[:5000])
PAGE = os.sysconf("SC_PAGE_SIZE")
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20
peak, stop = [0.0], threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.002)
before = rss_mb()
sampler = threading.Thread(target=sample); sampler.start()
t = time.perf_counter()
out = getattr(est, method)(X)
seconds = time.perf_counter() - t
stop.set(); sampler.join()
after = peak[0]
print(json.dumps({"method": method, "n": n, "d": d, "input_mb": X.nbytes / 2**20,
                  "output_mb": out.nbytes / 2**20, "peak_before_mb": before,
                  "peak_after_mb": after, "seconds": seconds}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=64)
    args = parser.parse_args()
    rows = []
    for method in ("predict", "predict_proba"):
        result = subprocess.run([sys.executable, "-c", CHILD, str(args.n), str(args.d), method],
                                capture_output=True, text=True, check=True)
        rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(f"| method | N × d | input (MB) | output (MB) | peak RSS growth during the call (MB) "
          f"| growth − output (MB) | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        growth = r["peak_after_mb"] - r["peak_before_mb"]
        print(f"| {r['method']} | {r['n']:,} × {r['d']} | {r['input_mb']:.0f} | "
              f"{r['output_mb']:.1f} | {growth:.0f} | {growth - r['output_mb']:.0f} | "
              f"{r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
