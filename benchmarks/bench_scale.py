"""Scale: fit time and peak memory of SP2OTClustering from 1e3 to 1e6 rows.

Synthetic long-tailed Gaussian blobs (d = 64, K = 100 true clusters, sizes
decaying exponentially with a ratio of 10 between the largest and the
smallest, float32, deterministic from ``--seed``). For every N and method
(``SP2OTClustering`` with fixed settings, ``KMeans`` and ``MiniBatchKMeans``
for scale) a fresh subprocess generates the data, resets the peak-RSS
high-water mark, fits, and reports:

- fit wall time; for SP2OT also the time per epoch (skorch history ``dur``)
  and the time outside the epochs (fit time minus their sum: validation,
  statistics, k-means start, prototypes, final ``labels_``), with a per-phase
  breakdown;
- the peak extra memory of fit (peak RSS minus the RSS right after data
  generation) and that as a multiple of the input size N·d·4 bytes;
- NMI / ARI against the true labels (for information).

The SP2OT runs also trace ``_train`` and its helpers line by line (RSS and
peak-RSS checkpoints at every line, not during training), which gives which
line of ``skclust_ot/_estimator.py`` allocates what. A separate subprocess per
N measures the recall of the bank-local kNN graph (what the ``"bank"`` scope
builds per step) against the exact global kNN.

Usage::

    python benchmarks/bench_scale.py                  # N = 1e3 ... 1e6 (about 8 min on 2 cores)
    python benchmarks/bench_scale.py --quick          # N = 1e3, 1e4, prints only (< 1 min)
    python benchmarks/bench_scale.py --sizes 1000 100000 --epochs 2 --out /tmp/scale.md

Memory: the high-water mark is reset through ``/proc/self/clear_refs`` (Linux)
and read as ``VmHWM``, the value ``ru_maxrss`` reports. ``ru_maxrss`` itself
(also recorded in the JSON) would include transient peaks of the data
generation, and on Linux a child inherits its parent's RSS through fork + exec.
"""

import argparse
import json
import linecache
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _scale_common import (  # noqa: E402 -- after the path  # isort: skip
    CENTRE_SCALE, D, K, RATIO, _reset_peak, _status, make_data)
BATCH, BANK = 256, 2560  # SP2OTClustering defaults: batch_size, memory_size = 10 * batch_size
METHODS = ("SP2OT", "KMeans", "MiniBatchKMeans")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="N = 1e3 and 1e4 only; prints only unless --out is given")
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help="values of N (default 1000 10000 100000 1000000)")
    parser.add_argument("--epochs", type=int, default=1,
                        help="SP2OTClustering max_epochs, the same at every N (default 1)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated subset of " + ", ".join(METHODS))
    parser.add_argument("--seed", type=int, default=0, help="data seed")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and BLAS threads (default 1: the reference machine is shared)")
    parser.add_argument("--no-recall", action="store_true",
                        help="skip the bank-local kNN recall measurement")
    parser.add_argument("--no-trace", action="store_true",
                        help="do not trace fit line by line (the tracer is off during training)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per subprocess")
    parser.add_argument("--out", default=None,
                        help="markdown output (default docs/scale_benchmark.md for a full run; "
                             "the raw runs go to the same name with .json)")
    parser.add_argument("--from-json", default=None,
                        help="re-render the markdown of an earlier run from its JSON")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "N", "EPOCHS"),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


ARGS = parse_args()
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)


# --------------------------------------------------------------------------- #
# peaks of nested intervals (the data and the memory helpers: _scale_common)
# --------------------------------------------------------------------------- #
class Peaks:
    """Exact peaks of several nested intervals from one high-water mark.

    Every ``tick`` reads ``VmHWM`` into all open intervals, then resets it to
    the current RSS; an interval's peak is the largest mark read while open.
    """

    def __init__(self, reset):
        self.reset = reset
        self.open = {}

    def tick(self):
        st = _status()
        for key in self.open:
            self.open[key] = max(self.open[key], st["VmHWM"])
        if self.reset:
            _reset_peak()
        return st

    def begin(self, key):
        st = self.tick()
        self.open[key] = st["VmRSS"]
        return st["VmRSS"]

    def end(self, key):
        st = self.tick()
        return self.open.pop(key), st["VmRSS"]


class PhaseRecorder:
    """Time and exact peak RSS of selected method calls (wrapped in place)."""

    def __init__(self, peaks):
        self.peaks = peaks
        self.phases = []  # name, seconds, rss at start, peak, rss at end (KiB)

    def wrap(self, owner, name, label=None, on_enter=None, on_exit=None):
        original = getattr(owner, name)
        recorder = self

        def wrapper(*args, **kwargs):
            if on_enter:
                on_enter()
            key = ("phase", name, len(recorder.phases), time.perf_counter())
            start = recorder.peaks.begin(key)
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - t
                peak, end = recorder.peaks.end(key)
                recorder.phases.append({"phase": label or name, "seconds": seconds,
                                        "rss_start_kib": start, "peak_kib": peak,
                                        "rss_end_kib": end})
                if on_exit:
                    on_exit()

        if isinstance(owner.__dict__.get(name), staticmethod):
            setattr(owner, name, staticmethod(wrapper))
        else:
            setattr(owner, name, wrapper)


class LineTracer:
    """RSS / peak RSS per executed line of selected functions.

    At every line (and return) event of a traced frame the interval since the
    previous event is charged to the previous line: the peak over its start
    and the RSS it kept. Untraced callees are charged to the calling line.
    """

    def __init__(self, codes, peaks):
        self.codes = set(codes)
        self.peaks = peaks
        self.stats = {}  # (file, line, func) -> dict
        self.loc = None
        self.start_rss = None
        self.stack = []

    def _charge(self):
        st = self.peaks.tick()
        if self.loc is not None:
            peak = self.peaks.open["line"]
            s = self.stats.setdefault(self.loc, {"count": 0, "peak_kib": 0, "kept_kib": 0})
            s["count"] += 1
            s["peak_kib"] = max(s["peak_kib"], peak - self.start_rss)
            s["kept_kib"] += st["VmRSS"] - self.start_rss
        self.peaks.open["line"] = st["VmRSS"]
        self.start_rss = st["VmRSS"]

    def global_trace(self, frame, event, arg):
        if frame.f_code in self.codes:
            self._charge()
            self.stack.append(self.loc)
            self.loc = (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
            return self.local_trace
        return None

    def local_trace(self, frame, event, arg):
        if event == "line":
            self._charge()
            self.loc = (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
        elif event == "return":
            self._charge()
            self.loc = self.stack.pop() if self.stack else None
        return self.local_trace

    def resume(self):
        self.start_rss = self.peaks.begin("line")
        sys.settrace(self.global_trace)

    start = resume

    def pause(self):
        sys.settrace(None)
        self.peaks.open.pop("line", None)


def _time_calls(owner, name):
    """Replace owner.name by a wrapper that appends each call's seconds to a list."""
    original, seconds = getattr(owner, name), []

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - t)

    setattr(owner, name, wrapper)
    return seconds


def _git_blob(path):
    import hashlib

    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def code_version():
    """Git blob of the imported skclust_ot/_estimator.py and a fingerprint of the package."""
    import hashlib

    import skclust_ot

    pkg = Path(skclust_ot.__file__).parent
    digest = hashlib.sha1()
    for f in sorted(pkg.rglob("*.py")):
        digest.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes())
    return {"estimator_blob": _git_blob(pkg / "_estimator.py"),
            "package_sha1": digest.hexdigest()[:12]}


def describe_blob(blob):
    """The commit that introduced this skclust_ot/_estimator.py blob, else None."""
    try:
        found = subprocess.run(["git", "log", "--format=%h", f"--find-object={blob}", "--",
                                "skclust_ot/_estimator.py"], cwd=ROOT, capture_output=True,
                               text=True).stdout.split()
    except OSError:
        return None
    return found[-1] if found else None


# --------------------------------------------------------------------------- #
# children
# --------------------------------------------------------------------------- #
def child_fit(kind, n, epochs):
    import numpy as np
    import torch

    torch.set_num_threads(ARGS.threads)
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from skclust_ot import SP2OTClustering
    from skclust_ot.nn import SP2OTNet

    # the code as imported (the files may change on disk while a long run goes on)
    code = code_version()
    sources = {}

    def make(n_clusters):
        if kind == "SP2OT":
            return SP2OTClustering(n_clusters=n_clusters, ot_scope="bank", init="kmeans",
                                   max_epochs=epochs, random_state=0, device="cpu")
        if kind == "KMeans":
            return KMeans(n_clusters=n_clusters, random_state=0)
        return MiniBatchKMeans(n_clusters=n_clusters, random_state=0)

    # warm-up on a tiny separate problem: one-off lazy initialization of the
    # libraries (thread pools, kernels) is not charged to the measured fit
    Xw, _ = make_data(400, seed=12345, k=10)
    make(10).fit(Xw)
    del Xw

    t0 = time.perf_counter()
    X, y = make_data(n, ARGS.seed)
    gen_seconds = time.perf_counter() - t0
    reset = _reset_peak()
    base = _status()
    est = make(K)

    peaks = Peaks(reset)
    phases, tracer = None, None
    if kind == "SP2OT":
        import skclust_ot._builders as builders_mod
        import skclust_ot._start as start_mod

        phases = PhaseRecorder(peaks)
        cls = SP2OTClustering
        if not ARGS.no_trace:
            import inspect

            # the fit's recipe and the start's steps (skclust_ot/_estimator.py,
            # _builders.py, _start.py), traced line by line
            functions = [getattr(cls, name) for name in
                         ("fit", "_validate_X", "_prepare_fit", "_train", "_set_fitted_state",
                          "_predict_labels")]
            functions += [getattr(builders_mod, name) for name in
                          ("fit_preprocessing", "build_module", "build_net")]
            functions += [getattr(start_mod, name) for name in
                          ("kmeans_labels", "fit_module_to_start", "calibrate_batchnorm",
                           "embed_all", "prototypes_from_labels", "fit_prototypes")]
            tracer = LineTracer([inspect.unwrap(f).__code__ for f in functions], peaks)
            for c in tracer.codes:
                if c.co_filename not in sources:
                    sources[c.co_filename] = Path(c.co_filename).read_text().splitlines()
        for owner, name, label in [(cls, "_validate_X", "validate X"),
                                   (builders_mod, "build_encoder", "build encoder"),
                                   (start_mod, "kmeans_labels", "k-means start"),
                                   (start_mod, "calibrate_batchnorm", "BatchNorm calibration"),
                                   (start_mod, "embed_all", "embed all rows"),
                                   (start_mod, "fit_prototypes", "fit prototypes (head start)"),
                                   (cls, "_predict_labels", "labels_ (predict all rows)")]:
            phases.wrap(owner, name, label)
        phases.wrap(SP2OTNet, "fit", "training (net.fit: all epochs)",
                    on_enter=tracer.pause if tracer else None,
                    on_exit=tracer.resume if tracer else None)

    timers = {}
    if kind == "SP2OT":
        import skclust_ot.nn._pseudo as pseudo_mod
        from skclust_ot.nn import PseudoLabeler

        for owner, name, key in [(SP2OTNet, "train_step", "step"),
                                 (PseudoLabeler, "targets", "pseudo_labels"),
                                 (pseudo_mod, "knn_graph", "bank_knn")]:
            timers[key] = _time_calls(owner, name)

    peaks.begin("fit")
    if tracer:
        tracer.start()
    t = time.perf_counter()
    est.fit(X)
    fit_seconds = time.perf_counter() - t
    if tracer:
        tracer.pause()
    peak_kib, _ = peaks.end("fit")
    if not reset:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    st = _status()
    labels = est.labels_
    out = {
        "kind": kind, "n": n, "d": D, "k": K, "epochs": epochs, "seed": ARGS.seed,
        "input_bytes": int(X.nbytes), "gen_seconds": gen_seconds, "fit_seconds": fit_seconds,
        "base_rss_kib": base["VmRSS"], "peak_kib": peak_kib, "rss_after_kib": st["VmRSS"],
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "peak_reset": reset, "load_1min": os.getloadavg()[0],
        "nmi": float(normalized_mutual_info_score(y, labels)),
        "ari": float(adjusted_rand_score(y, labels)),
        "n_clusters_found": int(np.unique(labels).size),
    }
    if kind == "SP2OT":
        hist = est.history_
        out["epoch_seconds"] = [float(v) for v in hist[:, "dur"]]
        out["steps_per_epoch"] = math.ceil(n / BATCH)
        out["ot_iter"] = [int(v) for v in hist[:, "ot_iter"]]
        out["ot_not_converged"] = [int(v) for v in hist[:, "ot_not_converged"]]
        out["phases"] = phases.phases
        out["step_seconds"] = timers["step"]
        out["pseudo_label_seconds"] = float(sum(timers["pseudo_labels"]))
        out["bank_knn_seconds"] = float(sum(timers["bank_knn"]))
        out["code"] = code
        if tracer:
            out["lines"] = [
                {"file": os.path.relpath(f, ROOT), "line": line, "func": func,
                 "code": (sources[f][line - 1] if f in sources and line <= len(sources[f])
                          else linecache.getline(f, line)).strip(), **s}
                for (f, line, func), s in tracer.stats.items()]
    else:
        out["n_iter"] = int(getattr(est, "n_steps_", None) or est.n_iter_)
    print(json.dumps(out))


def child_recall(n, n_banks=4, n_rows=256, k_nn=10):
    """Bank-local kNN (what the bank scope builds per step) vs the exact global kNN."""
    import numpy as np
    import torch

    torch.set_num_threads(ARGS.threads)
    from skclust_ot.ot import knn_graph

    X, y = make_data(n, ARGS.seed)
    Xt = torch.from_numpy(X)
    # neighbour ranks are invariant under the estimator's global standardization
    # (one shift, one scale), so the raw features give the same graphs
    size = min(BANK + BATCH, n)
    gen = np.random.default_rng(1000 + ARGS.seed)
    X64 = Xt.double()
    norms64 = (X64 * X64).sum(1)
    recalls, ratios, same_bank, same_true, per_rank = [], [], [], [], []
    t = time.perf_counter()
    for _ in range(n_banks):
        rows = torch.from_numpy(gen.choice(n, size, replace=False))
        graph = knn_graph(Xt[rows], k_nn, sigma=2.0)  # exactly as PseudoLabeler._bank_targets
        nbr = graph.indices()[1].reshape(size, k_nn)  # coalesced: rows in order
        pick = torch.from_numpy(gen.choice(size, min(n_rows, size), replace=False))
        q = X64[rows[pick]]
        # exact global kNN in float64, in row chunks of the data
        best_d = torch.full((q.shape[0], k_nn + 1), math.inf, dtype=torch.float64)
        best_i = torch.zeros((q.shape[0], k_nn + 1), dtype=torch.long)
        qn = (q * q).sum(1, keepdim=True)
        for s in range(0, n, 1 << 16):
            e = min(s + (1 << 16), n)
            dist = (qn + norms64[None, s:e] - 2 * q @ X64[s:e].T).clamp_min(0)
            cand_d = torch.cat([best_d, dist], 1)
            cand_i = torch.cat([best_i, torch.arange(s, e).expand(q.shape[0], -1)], 1)
            best_d, order = torch.topk(cand_d, k_nn + 1, dim=1, largest=False)
            best_i = torch.gather(cand_i, 1, order)
        self_idx = rows[pick]
        for r in range(q.shape[0]):
            keep = best_i[r] != self_idx[r]
            true_i = best_i[r][keep][:k_nn]
            true_d = best_d[r][keep][:k_nn].sqrt()
            bank_i = rows[nbr[pick[r]]]
            bank_d = ((X64[bank_i] - q[r]) ** 2).sum(1).sqrt().sort().values
            recalls.append(np.isin(bank_i.numpy(), true_i.numpy()).mean())
            ratios.append(float(bank_d.mean() / true_d.mean()))
            per_rank.append((bank_d / true_d).numpy())
            same_bank.append((y[bank_i.numpy()] == y[self_idx[r].item()]).mean())
            same_true.append((y[true_i.numpy()] == y[self_idx[r].item()]).mean())
    print(json.dumps({
        "kind": "recall", "n": n, "bank_rows": size, "n_banks": n_banks,
        "rows_checked": len(recalls), "k_nn": k_nn,
        "recall": float(np.mean(recalls)), "recall_expected_random": (size - 1) / (n - 1),
        "distance_ratio": float(np.mean(ratios)),
        "distance_ratio_rank1": float(np.mean([p[0] for p in per_rank])),
        "distance_ratio_rank10": float(np.mean([p[-1] for p in per_rank])),
        "same_label_bank": float(np.mean(same_bank)),
        "same_label_global": float(np.mean(same_true)),
        "seconds": time.perf_counter() - t,
    }))


# --------------------------------------------------------------------------- #
# parent
# --------------------------------------------------------------------------- #
def run_child(kind, n, epochs):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(ARGS.threads),
           "--seed", str(ARGS.seed), "--child", kind, str(n), str(epochs)]
    if ARGS.no_trace:
        cmd.append("--no-trace")
    t = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=ARGS.timeout,
                             cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"kind": kind, "n": n, "error": f"timeout after {ARGS.timeout:.0f} s"}
    if res.returncode != 0:
        return {"kind": kind, "n": n, "error": res.stderr.strip().splitlines()[-1:]}
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - t
    return out


def mb(kib):
    return kib / 1024


def fmt(x, spec=".3g"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return format(x, spec)


def table(headers, rows, align=None):
    align = align or ["---:"] * len(headers)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def extra_kib(r):
    return r["peak_kib"] - r["base_rss_kib"]


def render(runs, recalls, meta):
    parts = []
    add = parts.append
    add("# Scale benchmark: fit time and memory from 1e3 to 1e6 rows\n")
    add(f"Generated by `benchmarks/bench_scale.py`; do not edit by hand.\n")
    add(f"- Command: `{meta['command']}`")
    add(f"- Date: {meta['date']}")
    add(f"- Git commit: {meta['commit']}")
    versions = {}
    for r in runs:
        if r.get("code"):
            versions.setdefault(r["code"]["estimator_blob"], []).append(r["n"])
    for blob, ns in versions.items():
        where = describe_blob(blob)
        add(f"- Code measured (SP2OT runs at N = {', '.join(f'{n:.0e}' for n in ns)}): "
            f"`skclust_ot/_estimator.py` blob {blob[:10]}, "
            + (f"as in commit {where}" if where else "uncommitted working-tree state"))
    for r in runs:
        if r.get("code_note"):
            add(f"- Note on the N = {r['n']:.0e} {r['kind']} run: {r['code_note']}")
    if len(versions) > 1:
        add("- **Warning: the package changed during the run; the SP2OT runs measured "
            "different code versions.**")
        found = [describe_blob(b) for b in versions]
        if all(found):
            log = subprocess.run(["git", "log", "--format=%h %s", "--reverse",
                                  f"{found[0]}..{found[-1]}", "--", "skclust_ot"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.splitlines()
            for line in log:
                add(f"  - changed in between: {line[:160]}" + ("…" if len(line) > 160 else ""))
    add(f"- Machine: {meta['machine']}")
    add(f"- Total wall time: {meta['total_seconds'] / 60:.1f} min; load average at the start "
        f"{meta['load_start']:.1f}, at the end {meta['load_end']:.1f} (shared machine)\n")
    add(f"Data: {K} Gaussian blobs in d = {D} (centres ~ N(0, {CENTRE_SCALE:g}²·I), unit "
        f"within-cluster noise), cluster sizes ∝ {RATIO:g}^(−j/{K - 1}) (largest / smallest "
        f"= {RATIO:g}), float32, seed {meta['seed']}; generated inside each child process. "
        f"Input size = N·d·4 bytes.\n")
    add(f"Methods: `SP2OT` = `SP2OTClustering(n_clusters={K}, ot_scope=\"bank\", "
        f"init=\"kmeans\", max_epochs={meta['epochs']}, random_state=0, device=\"cpu\")` "
        f"(batch {BATCH}, memory bank {BANK}: every step solves the OT problem over "
        f"{BANK + BATCH} × {K} logits, so the same algorithm runs at every N; "
        f"ceil(N/{BATCH}) steps per epoch); `KMeans(n_clusters={K}, random_state=0)` and "
        f"`MiniBatchKMeans(n_clusters={K}, random_state=0)` (scikit-learn defaults) on the "
        "same data, for scale.\n")
    add("Each (method, N) is a fresh subprocess with torch and BLAS on "
        f"{meta['threads']} thread(s). It first fits the same method on a tiny separate "
        "problem (400 × 64, 10 clusters), so one-off library initialization is not "
        "charged to the measurement, then generates the data, resets the peak-RSS "
        "high-water mark to the current RSS (`/proc/self/clear_refs`) and fits. "
        "**Extra memory = peak RSS during fit − RSS right after data generation** "
        "(`VmHWM`, the figure `ru_maxrss` reports; `ru_maxrss` itself would also count "
        "transient peaks of the data generation and the parent's RSS inherited through "
        "fork + exec). Outside epochs = fit time − sum of the epochs' `dur` in "
        "`history_` (validation, statistics, k-means start, prototype fit, and the "
        "final `labels_` pass over all rows). NMI / ARI against the true labels are for "
        "information only (one epoch is far from a converged SP2OT fit).\n")

    add("## Fit time and peak extra memory\n")
    rows = []
    sp = {r["n"]: r for r in runs if r.get("kind") == "SP2OT" and "error" not in r}
    n0 = min(sp) if sp else None
    for r in sorted(runs, key=lambda r: (r["n"], METHODS.index(r["kind"]))):
        if "error" in r:
            rows.append((f"{r['n']:,}", r["kind"], f"failed: {r['error']}") + ("",) * 12)
            continue
        extra = extra_kib(r) * 1024
        if r["kind"] == "SP2OT":
            ep = r["epoch_seconds"]
            per_epoch = sum(ep) / len(ep)
            norm = (per_epoch / r["n"]) / (sum(sp[n0]["epoch_seconds"]) / len(
                sp[n0]["epoch_seconds"]) / n0)
            cols = (f"{len(ep)} ep × {r['steps_per_epoch']:,} steps", fmt(per_epoch, ".1f"),
                    fmt(1e3 * per_epoch / r["steps_per_epoch"], ".0f"),
                    fmt(1e6 * per_epoch / r["n"], ".0f"), fmt(norm, ".2f"),
                    fmt(r["fit_seconds"] - sum(ep), ".1f"))
        else:
            unit = "steps" if r["kind"] == "MiniBatchKMeans" else "iterations"
            cols = (f"{r['n_iter']:,} {unit}", "—", "—", "—", "—", "—")
        rows.append((f"{r['n']:,}", r["kind"], fmt(r["fit_seconds"], ".1f")) + cols + (
            f"{r['input_bytes'] / 2**20:.1f}", f"{extra / 2**20:.0f}",
            f"**{extra / r['input_bytes']:.2f}**", f"{r['nmi']:.3f}", f"{r['ari']:.3f}",
            f"{r['load_1min']:.1f}"))
    add(table(["N", "method", "fit s", "epochs / iterations", "s / epoch", "ms / step",
               "µs / epoch / row", "per-row epoch time ÷ smallest N", "outside epochs s",
               "input MB", "extra MB", "extra / input", "NMI", "ARI", "load"], rows,
              ["---:", "---"] + ["---:"] * 13))
    add("\nload = 1-minute load average of the machine at the end of the run (2 CPUs, "
        "shared with other work: above ~1.5 the timings include contention).")

    if sp and all("step_seconds" in r for r in sp.values()):
        import statistics

        add("\n## SP2OT: time per optimizer step\n")
        add("Every optimizer step (`SP2OTNet.train_step`: two views forward, pseudo-labels, "
            "backward, Adam) is timed in the child; pseudo-labels = "
            "`PseudoLabeler.targets` (per view one OT solve over bank + batch, "
            "including the bank-local kNN graph, which is also shown alone). Median and "
            "tail are robust to short bursts of contention on the shared machine; "
            "first / last 10 % compare the start of the epoch (rho ≈ rho0, bank filling) "
            "with its end (rho → 1).\n")
        rows = []
        for n in sorted(sp):
            r = sp[n]
            st = r["step_seconds"]
            tenth = max(1, len(st) // 10)
            q = statistics.quantiles(st, n=10) if len(st) >= 2 else [st[0]] * 9
            epoch = sum(r["epoch_seconds"])
            rows.append((f"{n:,}", f"{len(st):,}", f"{1e3 * statistics.median(st):.0f}",
                         f"{1e3 * sum(st) / len(st):.0f}", f"{1e3 * q[-1]:.0f}",
                         f"{1e3 * statistics.mean(st[:tenth]):.0f}",
                         f"{1e3 * statistics.mean(st[-tenth:]):.0f}",
                         f"{r['ot_iter'][0] / r['steps_per_epoch']:.0f}" if r.get("ot_iter")
                         else "—",
                         f"{1e3 * r['pseudo_label_seconds'] / len(st):.1f}",
                         f"{100 * r['pseudo_label_seconds'] / sum(st):.0f} %",
                         f"{100 * r['bank_knn_seconds'] / sum(st):.0f} %",
                         f"{100 * (epoch - sum(st)) / epoch:.0f} %"))
        add(table(["N", "steps", "median ms / step", "mean ms / step", "90th pct ms",
                   "first 10 % ms", "last 10 % ms", "OT iterations / step (epoch 1)",
                   "pseudo-labels ms / step", "pseudo-labels share",
                   "bank kNN share", "epoch time outside steps"], rows))

    if sp:
        add("\n## SP2OT: where the time and the memory go, by phase\n")
        add("Each phase is one call of the estimator's helpers (wrapped in the child); "
            "the high-water mark is reset at every phase boundary, so 'peak extra' is "
            "exact per phase: peak RSS during the phase − RSS right after data generation. "
            "'held' = RSS at the end of the phase − the same baseline. Phases not listed "
            "(validation, statistics, preprocessing) sit between them in `_train`; the "
            "line-by-line table below covers them. The k-means start is "
            "`KMeans(n_init=10)` up to 20,000 rows and `MiniBatchKMeans(n_init=3, "
            "batch_size=4096)` above (`_kmeans_labels`).\n")
        names = [p["phase"] for p in sp[max(sp)]["phases"]]
        headers = ["phase"] + [f"N = {n:.0e}: s / peak extra MB / held MB" for n in sorted(sp)]
        rows = []
        for name in names:
            row = [name]
            for n in sorted(sp):
                r = sp[n]
                ps = [p for p in r["phases"] if p["phase"] == name]
                if not ps:
                    row.append("—")
                    continue
                s = sum(p["seconds"] for p in ps)
                peak = max(p["peak_kib"] for p in ps) - r["base_rss_kib"]
                held = ps[-1]["rss_end_kib"] - r["base_rss_kib"]
                row.append(f"{s:.2f} / {mb(peak):.0f} / {mb(held):.0f}")
            rows.append(row)
        add(table(headers, rows, ["---"] + ["---:"] * len(sp)))

        big = sp[max(sp)]
        if big.get("lines"):
            inp = big["input_bytes"] / 1024
            add(f"\n## SP2OT: memory by line of the estimator (N = {big['n']:,})\n")
            if big.get("code"):
                where = describe_blob(big["code"]["estimator_blob"])
                add("Line numbers refer to the files of `skclust_ot/` "
                    + (f"at the commit of `_estimator.py`, {where}" if where else
                       f"blob {big['code']['estimator_blob'][:10]} (uncommitted)") + ".\n")
            add("A trace function (off during training, which is a single call) reads "
                "`VmRSS` and `VmHWM` at every line of `fit`, `_train` and the "
                "init helpers and resets the high-water mark, so each line gets its own "
                "transient peak and the RSS it leaves behind. Listed: lines whose peak "
                "or kept memory is at least 0.25 × the input "
                f"({big['input_bytes'] / 2**20:.0f} MB); × input in brackets. Lines run "
                "several times (loops) show their largest peak and their summed "
                "kept memory; negative kept memory is memory freed (e.g. when `_train` "
                "returns).\n")
            rows = []
            for s in sorted(big["lines"], key=lambda s: (s["file"], s["line"])):
                if max(s["peak_kib"], abs(s["kept_kib"])) < 0.25 * inp:
                    continue
                rows.append((f"`{s['file']}:{s['line']}`", s["func"],
                             "`" + s["code"].replace("|", "\\|")[:90] + "`", s["count"],
                             f"{mb(s['peak_kib']):.0f} ({s['peak_kib'] / inp:.2f})",
                             f"{mb(s['kept_kib']):.0f} ({s['kept_kib'] / inp:.2f})"))
            add(table(["line", "function", "code", "runs", "peak over line start MB",
                       "kept MB"], rows, ["---", "---", "---", "---:", "---:", "---:"]))

    if recalls:
        add("\n## Bank-local kNN graph vs the exact global kNN\n")
        add("What the semantic term sees in the `\"bank\"` scope: each step builds an "
            f"exact {recalls[0]['k_nn']}-NN graph among the ≤ {BANK + BATCH} rows of the "
            "memory bank plus batch (`PseudoLabeler._bank_targets` → `knn_graph`), never "
            "over the whole data set. Here: "
            f"{recalls[0]['n_banks']} banks of {BANK + BATCH} random rows (training shuffles, "
            "so a bank is a random subset), the bank-local 10-NN of "
            f"{recalls[0]['rows_checked'] // recalls[0]['n_banks']} random rows per bank "
            "(`knn_graph`, float32, as in training) against their exact global 10-NN over "
            "all N rows (float64, chunked). Recall = fraction of bank-local neighbours "
            "that are among the true global 10-NN; for a random subset of size b it is "
            "≈ (b − 1)/(N − 1). Distance ratio = mean distance to the bank neighbours / "
            "mean distance to the true neighbours (also for the nearest and the 10th "
            "alone). Same label = fraction of neighbours from the row's own blob.\n")
        rows = [(f"{r['n']:,}", r["bank_rows"], f"**{r['recall']:.3f}**",
                 f"{r['recall_expected_random']:.3f}", f"{r['distance_ratio']:.3f}",
                 f"{r['distance_ratio_rank1']:.3f}", f"{r['distance_ratio_rank10']:.3f}",
                 f"{r['same_label_bank']:.3f}", f"{r['same_label_global']:.3f}")
                for r in recalls if "error" not in r]
        add(table(["N", "bank rows", "recall@10", "(b−1)/(N−1)", "distance ratio",
                   "ratio, 1st", "ratio, 10th", "same label, bank", "same label, global"],
                  rows))

    add("\n## What fit materializes\n")
    add("- Never an N×N matrix. `\"bank\"` scope (forced here; the default above "
        f"20,000 rows before #14, now only on request): per step one OT problem over ({BANK} + {BATCH}) × {K} logits "
        "per view and an exact kNN graph among those ≤ "
        f"{BANK + BATCH} rows (a {BANK + BATCH} × {BANK + BATCH} distance block), "
        "built from the preprocessed inputs (`skclust_ot/nn/_pseudo.py`, "
        "`_bank_targets`). "
        "`\"full\"` scope (the default at every N since #14; its timings are in "
        "`docs/large_benchmark.md`): the kNN graph is exact up to 20,000 rows, in row "
        "chunks of 4096 × N distances, approximate above (`skclust_ot/ot/_graph.py`), "
        "and the OT problem is N × K once per view per epoch.")
    held = ""
    if sp:
        big = sp[max(sp)]
        train = [p for p in big["phases"] if p["phase"].startswith("training")]
        if train:
            h = (train[0]["rss_start_kib"] - big["base_rss_kib"]) * 1024
            held = (f" At N = {big['n']:,} fit holds {h / 2**20:.0f} MB = "
                    f"{h / big['input_bytes']:.2f} × the input when training starts.")
    add("- Per-row state held during training: whatever `_train` keeps alive until "
        "it returns, chiefly the float32 copy of X handed to skorch and the "
        "preprocessed float32 inputs (the bank graph's features); see the line table."
        + held)
    if "verdict" in meta:
        add("\n## Scaling verdict\n")
        add(meta["verdict"])
    return "\n".join(parts) + "\n"


def verdict(runs):
    sp = sorted((r for r in runs if r.get("kind") == "SP2OT" and "error" not in r),
                key=lambda r: r["n"])
    if len(sp) < 2:
        return None
    extra = [extra_kib(r) * 1024 for r in sp]
    inp = [r["input_bytes"] for r in sp]
    per_row = [sum(r["epoch_seconds"]) / len(r["epoch_seconds"]) / r["n"] for r in sp]
    per_step = [sum(r["epoch_seconds"]) / len(r["epoch_seconds"]) / r["steps_per_epoch"]
                for r in sp]
    slopes = [(extra[i + 1] - extra[i]) / (inp[i + 1] - inp[i]) for i in range(len(sp) - 1)]
    fixed = extra[-1] - slopes[-1] * inp[-1]
    lines = [
        "- Memory: extra / input = " + ", ".join(
            f"{e / i:.2f} (N = {r['n']:.0e})" for e, i, r in zip(extra, inp, sp))
        + ". The ratio falls with N because a fixed part (model, bank, per-step OT and "
        "kNN buffers, allocator) dominates at small N. The marginal extra memory per input "
        "byte between consecutive N is " + ", ".join(
            f"{x:.2f} ({sp[i]['n']:.0e} → {sp[i + 1]['n']:.0e})" for i, x in enumerate(slopes))
        + f", i.e. peak extra ≈ {fixed / 2**20:.0f} MB + {slopes[-1]:.2f} × N·d·4 bytes at "
        "the largest sizes: "
        + ("O(N·d + bank·K) holds (the per-row slope is roughly constant)."
           if len(slopes) < 2 or max(slopes[-2:]) <= 1.3 * min(slopes[-2:])
           else "the per-row slope still changes between the largest sizes.")]
    full = [i for i, r in enumerate(sp) if r["n"] >= BANK + BATCH]
    lines.append(
        "- Time: seconds per epoch per row, normalized to N = "
        f"{sp[0]['n']:.0e}: " + ", ".join(f"{x / per_row[0]:.2f}" for x in per_row)
        + " (1 = linear in N); ms per optimizer step: "
        + ", ".join(f"{1e3 * x:.0f}" for x in per_step) + ".")
    if full and full[0] > 0:
        j = full[0]
        lines[-1] += (
            f" At N = {sp[0]['n']:,} < {BANK + BATCH} the bank never fills (each step "
            "solves over at most N rows), so its steps are cheaper and the larger N read "
            f"high against it. Normalized to N = {sp[j]['n']:.0e}, the first N with a full "
            "bank: " + ", ".join(f"{per_row[i] / per_row[j]:.2f}" for i in full)
            + (f" (at N = {sp[j]['n']:,} the first {BANK // BATCH} steps run while the bank "
               f"fills: {BANK // BATCH} of {sp[j]['steps_per_epoch']})."))
    if len(full) >= 2:
        a, b = full[-2], full[-1]
        growth = per_row[b] / per_row[a]
        lines[-1] += (
            f" Between the two largest sizes (N = {sp[a]['n']:.0e} → {sp[b]['n']:.0e}, both "
            f"with a full bank nearly all epoch) time per row changes by ×{growth:.2f}: "
            + (f"time per epoch is linear in N to within {abs(growth - 1):.0%} (time per "
               "step is constant up to the OT iterations per step and the load of the "
               "shared machine, both in the tables above)." if growth <= 1.15 else
               "time per epoch grows faster than N."))
    return "\n".join(lines)


def machine_info():
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        mem = float("nan")
    import numpy as np
    import sklearn
    import skorch

    return (f"{cpu}, {os.cpu_count()} CPUs, {mem:.0f} GiB RAM; Python "
            f"{platform.python_version()}, torch {torch.__version__} "
            f"({ARGS.threads} thread(s)), NumPy {np.__version__}, scikit-learn "
            f"{sklearn.__version__}, skorch {skorch.__version__}")


def main():
    if ARGS.child:
        kind, n, epochs = ARGS.child
        if kind == "recall":
            child_recall(int(n))
        else:
            child_fit(kind, int(n), int(epochs))
        return
    if ARGS.from_json:
        data = json.loads(Path(ARGS.from_json).read_text())
        meta = data["meta"]
        v = verdict(data["runs"])
        if v:
            meta["verdict"] = v
        text = render(data["runs"], data["recall"], meta)
        out = ARGS.out or str(Path(ARGS.from_json).with_suffix(".md"))
        Path(out).write_text(text)
        print(text + f"\nwritten to {out}")
        return
    sizes = ARGS.sizes or ([1000, 10000] if ARGS.quick else [1000, 10000, 100000, 1000000])
    methods = [m for m in ARGS.methods.split(",") if m]
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    full = not ARGS.quick and ARGS.sizes is None
    out = ARGS.out or (str(ROOT / "docs" / "scale_benchmark.md") if full else None)
    json_out = str(Path(out).with_suffix(".json")) if out else None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "diff", "--name-only", "HEAD", "--", "skclust_ot"],
                               cwd=ROOT, capture_output=True, text=True).stdout.split()
        if dirty:
            blob = subprocess.run(["git", "hash-object", "skclust_ot/_estimator.py"], cwd=ROOT,
                                  capture_output=True, text=True).stdout.strip()[:10]
            commit += (" + uncommitted changes in " + ", ".join(f"`{f}`" for f in dirty)
                       + f" (working-tree `_estimator.py` blob {blob})")
    except OSError:
        commit = "unknown"
    meta = {"command": "python benchmarks/bench_scale.py " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit,
            "machine": machine_info(), "seed": ARGS.seed, "epochs": ARGS.epochs,
            "threads": ARGS.threads, "load_start": os.getloadavg()[0]}
    meta["command"] = meta["command"].strip()
    start = time.perf_counter()
    runs, recalls = [], []

    def save():
        if json_out:
            Path(json_out).write_text(json.dumps({"meta": meta, "runs": runs,
                                                  "recall": recalls}, indent=1) + "\n")

    for n in sizes:
        for kind in methods:
            r = run_child(kind, n, ARGS.epochs)
            runs.append(r)
            if "error" in r:
                print(f"N={n:,} {kind}: FAILED {r['error']}", flush=True)
            else:
                extra = extra_kib(r) * 1024
                ep = r.get("epoch_seconds")
                print(f"N={n:,} {kind}: fit {r['fit_seconds']:.1f} s"
                      + (f" (epochs {', '.join(f'{e:.1f}' for e in ep)} s)" if ep else "")
                      + f", extra {extra / 2**20:.0f} MB = {extra / r['input_bytes']:.2f} × "
                      f"input, NMI {r['nmi']:.3f}", flush=True)
            save()
        if not ARGS.no_recall:
            r = run_child("recall", n, 0)
            recalls.append(r)
            if "error" not in r:
                print(f"N={n:,} recall@10 {r['recall']:.3f} (random subset "
                      f"{r['recall_expected_random']:.3f}), distance ratio "
                      f"{r['distance_ratio']:.3f}", flush=True)
            save()
    meta["total_seconds"] = time.perf_counter() - start
    meta["load_end"] = os.getloadavg()[0]
    v = verdict(runs)
    if v:
        meta["verdict"] = v
    save()
    text = render(runs, recalls, meta)
    print("\n" + text)
    if out:
        Path(out).write_text(text)
        print(f"written to {out}" + (f" and {json_out}" if json_out else ""))


if __name__ == "__main__":
    main()
