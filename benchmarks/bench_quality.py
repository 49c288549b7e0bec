"""Quality benchmark: SP2OTClustering and its ablations against classical clustering
on real long-tailed data (cases in ``benchmarks/cases.py``).

Usage::

    python benchmarks/bench_quality.py --jobs 2             # all cases, seeds 0,1,2, 2 processes
    python benchmarks/bench_quality.py --half tuning        # the tuning half only
    python benchmarks/bench_quality.py --quick              # digits_lt10, olive_area, penguins; seed 0
    python benchmarks/bench_quality.py --cases digits_lt10 --methods SP2OT,KMeans --seeds 0
    python benchmarks/bench_quality.py --sp2ot-params '{"kl_weight": 0.5}' --out /tmp/q.md
    python benchmarks/bench_quality.py --from-json docs/quality_benchmark.json   # tables only

Every method gets only ``n_clusters`` = number of true classes (except HDBSCAN,
which chooses its own number) and ``random_state=seed`` where it has one. Raw
per-run results are written as JSON beside the markdown (after every finished
(case, seed) job, so a long run can be inspected or resumed with ``--resume``).

The cases are split into a tuning half and a validation half by a fixed, seeded
rule (``cases.split_halves``); tune on the tuning half only (``--half tuning``)
and look at the validation half only to check what was chosen.
"""

import argparse
import datetime
import hashlib
import json
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.cluster import (  # noqa: E402
    HDBSCAN,
    AgglomerativeClustering,
    KMeans,
    SpectralClustering,
)
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_score  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from cases import CASE_NOTES, CASES, KIND, prepare_embeddings, split_halves  # noqa: E402

from skclust_ot import VARIANTS, SP2OTClustering  # noqa: E402
from skclust_ot.metrics import clustering_report  # noqa: E402

QUICK_CASES = ["digits_lt10", "olive_area", "penguins"]
HALVES = ["tuning", "validation"]
# "start": the estimator's start without training (max_epochs=0).
SP2OT_METHODS = ["SP2OT", "start", "balanced", "uot", "pot", "p2ot"]
ABLATIONS = ["balanced", "uot", "pot", "p2ot"]
CLASSICAL_METHODS = ["KMeans", "GaussianMixture", "Ward", "Spectral", "Spectral-qr", "HDBSCAN"]
# The ablations are kept available by --methods but not run by default (shorter run).
DEFAULT_METHODS = ["SP2OT", "start"] + CLASSICAL_METHODS
# "sp2ot" (VARIANTS["sp2ot"] on top of the defaults) is available on request.
ALL_METHODS = ["SP2OT", "start"] + ABLATIONS + CLASSICAL_METHODS + ["sp2ot"]
# Spectral clustering on at least this many rows uses eigen_solver="amg" when pyamg
# is installed (ARPACK on the 15-NN graph of ~16,000 rows takes minutes).
AMG_MIN_SAMPLES = 5000


def _has_pyamg():
    try:
        import pyamg  # noqa: F401
    except ImportError:
        return False
    return True


HAS_PYAMG = _has_pyamg()


def spectral_solver(n_samples):
    return "amg" if (HAS_PYAMG and n_samples >= AMG_MIN_SAMPLES) else None
METRICS = ["balanced_accuracy", "macro_f1", "nmi", "ari", "accuracy", "head", "medium", "tail"]
METRIC_LABELS = {"balanced_accuracy": "BA", "macro_f1": "F1", "nmi": "NMI", "ari": "ARI",
                 "accuracy": "Acc", "head": "head", "medium": "med", "tail": "tail"}


def make_estimator(method, n_clusters, seed, sp2ot_params, n_samples=0):
    if method == "SP2OT":
        return SP2OTClustering(n_clusters=n_clusters, random_state=seed, **sp2ot_params)
    if method == "start":
        # The start alone: max_epochs=0 means "start only, no training".
        params = {**sp2ot_params, "max_epochs": 0}
        return SP2OTClustering(n_clusters=n_clusters, random_state=seed, **params)
    if method in VARIANTS:
        params = {**VARIANTS[method], **sp2ot_params}
        return SP2OTClustering(n_clusters=n_clusters, random_state=seed, **params)
    if method == "KMeans":
        return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed)
    if method == "GaussianMixture":
        return GaussianMixture(n_components=n_clusters, random_state=seed)
    if method == "Ward":
        return AgglomerativeClustering(n_clusters=n_clusters, linkage="ward")
    if method == "Spectral":
        return SpectralClustering(n_clusters=n_clusters, affinity="nearest_neighbors",
                                  n_neighbors=15, random_state=seed,
                                  eigen_solver=spectral_solver(n_samples))
    if method == "Spectral-qr":
        return SpectralClustering(n_clusters=n_clusters, affinity="nearest_neighbors",
                                  n_neighbors=15, assign_labels="cluster_qr",
                                  random_state=seed, eigen_solver=spectral_solver(n_samples))
    if method == "HDBSCAN":
        # copy=True only silences a FutureWarning (sklearn 1.9); results are identical.
        return HDBSCAN(copy=True)
    raise ValueError(f"unknown method {method!r}; choose from {ALL_METHODS}")


def _warning_summary(caught, limit=3):
    seen = []
    for w in caught:
        text = f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}"
        if text not in seen:
            seen.append(text)
    return seen[:limit], len(caught)


def run_one(method, X, y, seed, sp2ot_params):
    """Fit one method; return a record (never raises)."""
    n_clusters = int(len(np.unique(y)))
    record = {"method": method, "seed": seed, "n_samples": int(X.shape[0]),
              "n_features": int(X.shape[1]), "n_classes": n_clusters}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = make_estimator(method, n_clusters, seed, sp2ot_params, X.shape[0])
            start = time.perf_counter()
            labels = np.asarray(est.fit_predict(X))
            record["fit_seconds"] = time.perf_counter() - start
        record["warnings"], record["n_warnings"] = _warning_summary(caught)
        record.update(clustering_report(y, labels))
        record["all_clusters_nonempty"] = bool(record["n_clusters_found"] == n_clusters)
        if method == "HDBSCAN":
            record["n_noise"] = int(np.sum(labels == -1))
        if method.startswith("Spectral"):
            record["eigen_solver"] = est.eigen_solver or "arpack"
        if hasattr(est, "n_iter_"):
            record["n_iter"] = int(np.max(est.n_iter_))
        record["ok"] = True
    except Exception as exc:  # noqa: BLE001 -- a failure is a result, recorded
        record["ok"] = False
        record["error"] = f"{type(exc).__name__}: {exc}"[:500]
        record["traceback"] = traceback.format_exc()[-2000:]
    return record


def supervised_ceiling(X, y, seed):
    """5-fold stratified CV balanced accuracy of logistic regression with true labels."""
    try:
        cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = cross_val_score(LogisticRegression(max_iter=2000), X, y, cv=cv,
                                     scoring="balanced_accuracy")
        return {"ok": True, "balanced_accuracy": float(scores.mean())}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------

def _mean_std(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def _fmt(mean, std=None, digits=3):
    if mean is None:
        return "—"
    if std is None:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def aggregate(results):
    """Per (case, method): mean/std of metrics over successful seeds, plus run counts."""
    agg = {}
    for case, case_res in results["cases"].items():
        agg[case] = {}
        methods = []
        for r in case_res["runs"]:
            if r["method"] not in methods:
                methods.append(r["method"])
        for method in methods:
            runs = [r for r in case_res["runs"] if r["method"] == method]
            ok = [r for r in runs if r.get("ok")]
            entry = {"n_runs": len(runs), "n_ok": len(ok), "n_failed": len(runs) - len(ok),
                     "errors": sorted({r["error"] for r in runs if not r.get("ok")})}
            for key in METRICS + ["fit_seconds", "n_clusters_found"]:
                entry[key] = _mean_std([r.get(key) for r in ok])
            found = [r["n_clusters_found"] for r in ok]
            entry["found_range"] = (min(found), max(found)) if found else None
            entry["all_nonempty_runs"] = sum(bool(r.get("all_clusters_nonempty")) for r in ok)
            agg[case][method] = entry
    return agg


def _ordered_methods(results, agg):
    order = []
    for case in agg:
        for m in agg[case]:
            if m not in order:
                order.append(m)
    return sorted(order, key=lambda m: ALL_METHODS.index(m) if m in ALL_METHODS else 99)


def _case_halves(results):
    """{case: half} from the run's meta (or, for an old JSON, the current split)."""
    halves = results["meta"].get("halves") or split_halves()
    where = {c: h for h, names in halves.items() for c in names}
    return {c: where.get(c, "other") for c in results["cases"]}


def _halves_present(results):
    where = _case_halves(results)
    present = [h for h in HALVES if h in where.values()]
    return present + (["other"] if "other" in where.values() else []), where


def per_case_tables(results, agg, cases=None):
    lines = []
    for case in (cases if cases is not None else list(agg)):
        methods = agg[case]
        case_res = results["cases"][case]
        k = case_res.get("n_classes")
        lines.append(f"### {case}")
        lines.append("")
        lines.append(f"Kind {KIND.get(case, '?')}. {CASE_NOTES.get(case, '')}. "
                     f"n = {case_res.get('n_samples')}, "
                     f"d = {case_res.get('n_features')}, K = {k}, class sizes "
                     f"{case_res.get('class_sizes')}.")
        ceiling = case_res.get("ceiling_mean_std")
        if ceiling:
            lines.append(f"Supervised ceiling (logistic regression, 5-fold CV balanced "
                         f"accuracy): **{_fmt(*ceiling)}**.")
        lines.append("")
        header = (["method"] + [METRIC_LABELS[m] for m in METRICS]
                  + ["clusters found", "all K non-empty", "fit s"])
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for method in _ordered_methods(results, {case: methods}):
            e = methods[method]
            if e["n_ok"] == 0:
                row = [method] + ["FAILED"] * len(METRICS) + ["—", f"0/{e['n_runs']}", "—"]
            else:
                rng = e["found_range"]
                found = str(rng[0]) if rng[0] == rng[1] else f"{rng[0]}–{rng[1]}"
                row = ([method] + [_fmt(*e[m]) for m in METRICS]
                       + [found, f"{e['all_nonempty_runs']}/{e['n_runs']}",
                          _fmt(*e["fit_seconds"], digits=2)])
                if e["n_failed"]:
                    row[0] += f" ({e['n_failed']} failed)"
            lines.append("| " + " | ".join(row) + " |")
        failures = [(m, err) for m, e in methods.items() for err in e["errors"]]
        for m, err in failures:
            lines.append(f"\nFailure, {m}: `{err}`")
        lines.append("")
    return "\n".join(lines)


KMEANS_TOL = 0.01  # "at least KMeans" allows this much below KMeans's mean


def _method_stats(results, agg, cases, method):
    """Means over cases, the counts against KMeans, and fit-time quantiles over runs."""
    present = [c for c in cases if method in agg[c] and agg[c][method]["n_ok"] > 0]
    out = {"present": present}
    for key in ["balanced_accuracy", "macro_f1", "nmi", "ari", "accuracy", "tail"]:
        vals = [agg[c][method][key][0] for c in present]
        out[key] = float(np.mean(vals)) if vals else None
    ge_ba = ge_f1 = n_cmp = 0
    for c in present:
        km = agg[c].get("KMeans")
        if km and km["n_ok"]:
            n_cmp += 1
            e = agg[c][method]
            ge_ba += e["balanced_accuracy"][0] >= km["balanced_accuracy"][0] - KMEANS_TOL
            ge_f1 += e["macro_f1"][0] >= km["macro_f1"][0] - KMEANS_TOL
    out.update(ge_ba=ge_ba, ge_f1=ge_f1, n_cmp=n_cmp)
    secs = [r["fit_seconds"] for c in cases for r in results["cases"][c]["runs"]
            if r["method"] == method and r.get("ok")]
    out["fit_median"] = float(np.median(secs)) if secs else None
    out["fit_max"] = float(np.max(secs)) if secs else None
    out["fit_mean"] = float(np.mean(secs)) if secs else None
    out["n_runs"] = sum(agg[c][method]["n_runs"] for c in cases if method in agg[c])
    out["n_ok"] = sum(agg[c][method]["n_ok"] for c in cases if method in agg[c])
    out["nonempty"] = sum(agg[c][method]["all_nonempty_runs"] for c in cases if method in agg[c])
    return out


def _oracle(agg, cases):
    """Mean over cases of the best classical method's mean BA / F1, picked per case
    after the fact (None unless every case has a classical result)."""
    best_ba, best_f1 = [], []
    for c in cases:
        cands = [agg[c][m] for m in CLASSICAL_METHODS if m in agg[c] and agg[c][m]["n_ok"]]
        if cands:
            best_ba.append(max(e["balanced_accuracy"][0] for e in cands))
            best_f1.append(max(e["macro_f1"][0] for e in cands))
    if best_ba and len(best_ba) == len(cases):
        return float(np.mean(best_ba)), float(np.mean(best_f1))
    return None


def _ceiling(results, cases):
    ceil = [results["cases"][c].get("ceiling_mean_std") for c in cases]
    return float(np.mean([x[0] for x in ceil])) if ceil and all(ceil) else None


def summary_table(results, agg, cases=None):
    cases = list(agg) if cases is None else cases
    sub = {c: agg[c] for c in cases}
    methods = _ordered_methods(results, sub)
    lines = ["| method | BA | F1 | NMI | ARI | Acc | tail | BA ≥ KMeans−0.01 | F1 ≥ KMeans−0.01 "
             "| all K non-empty (runs) | failed runs | fit s mean | fit s median | fit s max |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for method in methods:
        st = _method_stats(results, agg, cases, method)
        present = st["present"]
        incomplete = "" if len(present) == len(cases) else f" (on {len(present)}/{len(cases)} cases)"
        row = [method + incomplete] + [_fmt(st[k]) for k in
                                       ["balanced_accuracy", "macro_f1", "nmi", "ari",
                                        "accuracy", "tail"]]
        row += [f"{st['ge_ba']}/{st['n_cmp']}", f"{st['ge_f1']}/{st['n_cmp']}",
                f"{st['nonempty']}/{st['n_ok']}", f"{st['n_runs'] - st['n_ok']}/{st['n_runs']}",
                _fmt(st["fit_mean"], digits=2), _fmt(st["fit_median"], digits=2),
                _fmt(st["fit_max"], digits=2)]
        lines.append("| " + " | ".join(row) + " |")
    oracle = _oracle(agg, cases)
    if oracle:
        lines.append(f"| best classical per case (oracle) | {oracle[0]:.3f} | "
                     f"{oracle[1]:.3f} |" + " |" * 12)
    ceil = _ceiling(results, cases)
    if ceil is not None:
        lines.append(f"| supervised ceiling (LogReg, 5-fold CV) | {ceil:.3f} |" + " |" * 13)
    return "\n".join(lines)


def halves_table(results, agg, halves, where):
    """Mean BA / F1 / NMI per method, the halves side by side."""
    by_half = {h: [c for c in agg if where[c] == h] for h in halves}
    methods = _ordered_methods(results, agg)
    head = ["method"]
    for h in halves:
        head += [f"{h} BA", f"{h} F1", f"{h} NMI", f"{h} ≥KM−0.01 (BA/F1)"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for method in methods:
        row = [method]
        for h in halves:
            st = _method_stats(results, agg, by_half[h], method)
            mark = "" if len(st["present"]) == len(by_half[h]) else \
                f" ({len(st['present'])}/{len(by_half[h])})"
            row += [_fmt(st["balanced_accuracy"]) + mark, _fmt(st["macro_f1"]),
                    _fmt(st["nmi"]), f"{st['ge_ba']}/{st['ge_f1']} of {st['n_cmp']}"]
        lines.append("| " + " | ".join(row) + " |")
    row_o, row_c = ["best classical per case (oracle)"], ["supervised ceiling (LogReg, 5-fold CV)"]
    for h in halves:
        o = _oracle(agg, by_half[h])
        c = _ceiling(results, by_half[h])
        row_o += [_fmt(o[0]) if o else "—", _fmt(o[1]) if o else "—", "", ""]
        row_c += [_fmt(c), "", "", ""]
    lines.append("| " + " | ".join(row_o) + " |")
    lines.append("| " + " | ".join(row_c) + " |")
    return "\n".join(lines)


def headline_lines(results, agg, halves, where):
    """SP2OT against KMeans (within 0.01) and its fit time beside Spectral's, per half."""
    lines = []
    for h in halves:
        cases = [c for c in agg if where[c] == h]
        parts = []
        for method in ["SP2OT", "start"]:
            st = _method_stats(results, agg, cases, method)
            if st["n_ok"]:
                parts.append(f"{method} ≥ KMeans − 0.01 on {st['ge_ba']}/{st['n_cmp']} cases "
                             f"(BA) and {st['ge_f1']}/{st['n_cmp']} (F1)")
        times = []
        for method in ["SP2OT", "Spectral", "Spectral-qr"]:
            st = _method_stats(results, agg, cases, method)
            if st["n_ok"]:
                times.append(f"{method} {st['fit_median']:.2f} / {st['fit_max']:.2f}")
        if times:
            parts.append("fit seconds median / max over runs: " + ", ".join(times))
        if parts:
            lines.append(f"- **{h}** ({len(cases)} cases): " + "; ".join(parts) + ".")
    return "\n".join(lines)


KIND_METHODS = ["SP2OT", "start", "KMeans", "Spectral"]


def kinds_table(results, agg, halves, where):
    """Mean BA / F1 per kind of data and half, SP2OT beside its start and two baselines.

    A default that helps one kind and hurts another shows here before it
    hides in the mean over all cases. A method's cell averages the cases of
    that kind where it ran; '(m/n)' marks a method missing on some of them.
    """
    kinds = sorted({KIND.get(c, "?") for c in agg})
    methods = [m for m in KIND_METHODS if any(m in agg[c] for c in agg)]
    head = ["kind", "half", "cases"] + [f"{m} BA / F1" for m in methods]
    if "SP2OT" in methods and "KMeans" in methods:
        head.append("SP2OT − KMeans (BA / F1)")
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for kind in kinds:
        for h in halves:
            cases = [c for c in agg if where[c] == h and KIND.get(c, "?") == kind]
            if not cases:
                continue
            row = [kind, h, str(len(cases))]
            means = {}
            for m in methods:
                st = _method_stats(results, agg, cases, m)
                mark = "" if len(st["present"]) == len(cases) else \
                    f" ({len(st['present'])}/{len(cases)})"
                means[m] = (st["balanced_accuracy"], st["macro_f1"], st["present"])
                row.append(f"{_fmt(st['balanced_accuracy'])} / {_fmt(st['macro_f1'])}{mark}"
                           if st["present"] else "—")
            if "SP2OT − KMeans (BA / F1)" in head:
                both = [c for c in means["SP2OT"][2] if c in means["KMeans"][2]]
                if both:
                    d_ba = np.mean([agg[c]["SP2OT"]["balanced_accuracy"][0]
                                    - agg[c]["KMeans"]["balanced_accuracy"][0] for c in both])
                    d_f1 = np.mean([agg[c]["SP2OT"]["macro_f1"][0]
                                    - agg[c]["KMeans"]["macro_f1"][0] for c in both])
                    row.append(f"{d_ba:+.3f} / {d_f1:+.3f}")
                else:
                    row.append("—")
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def ceiling_table(results, agg, cases=None):
    cases = list(agg) if cases is None else cases
    where = _case_halves(results)
    lines = ["| case | half | kind | K | n | ceiling BA | SP2OT BA | SP2OT / ceiling | start BA "
             "| KMeans BA | Spectral BA | best classical (BA) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in cases:
        cr = results["cases"][c]
        ceil = cr.get("ceiling_mean_std")

        def ba(m, c=c):
            e = agg[c].get(m)
            return e["balanced_accuracy"][0] if e and e["n_ok"] else None

        sp = ba("SP2OT")
        ratio = f"{sp / ceil[0]:.0%}" if (sp is not None and ceil) else "—"
        cands = [(ba(m), m) for m in CLASSICAL_METHODS if ba(m) is not None]
        best = max(cands) if cands else None
        lines.append(f"| {c} | {where[c]} | {KIND.get(c, '?')} | {cr.get('n_classes')} | "
                     f"{cr.get('n_samples')} | "
                     f"{_fmt(*ceil) if ceil else '—'} | {_fmt(sp)} | {ratio} | "
                     f"{_fmt(ba('start'))} | {_fmt(ba('KMeans'))} | {_fmt(ba('Spectral'))} | "
                     f"{f'{best[1]} ({best[0]:.3f})' if best else '—'} |")
    return "\n".join(lines)


def render(results):
    agg = aggregate(results)
    meta = results["meta"]
    halves, where = _halves_present(results)
    by_half = {h: [c for c in agg if where[c] == h] for h in halves}
    spectral_note = meta.get("spectral_eigen_solver",
                             "ARPACK (scikit-learn's default eigen_solver)")
    head = [
        "# Quality benchmark: SP2OTClustering vs classical clustering on long-tailed real data",
        "",
        "Generated by `benchmarks/bench_quality.py`; do not edit by hand "
        "(regenerate the tables from the JSON with `--from-json`).",
        "",
        f"- Command: `{meta['command']}`",
        f"- Date: {meta['date']}",
        f"- Git commit: {meta['git_commit']}{' (working tree had uncommitted changes under skclust_ot/; source sha256 ' + meta.get('skclust_ot_source_sha256', '?') + ')' if meta.get('git_dirty') else ''}",
        f"- Machine: {meta['machine']}; nproc = {meta['nproc']}; torch {meta['torch_version']}, "
        f"torch threads = {meta['torch_threads']} (set by the benchmark: shared machine); "
        f"BLAS/OpenMP threads limited to {meta['blas_threads']} (threadpoolctl); "
        f"{meta.get('jobs', 1)} worker process(es); sklearn {meta['sklearn_version']}",
        f"- Seeds: {meta['seeds']} (a seed picks the long-tailed subsample and all method randomness)",
        f"- Extra SP2OT parameters (`--sp2ot-params`, applied to SP2OT, start and ablations): "
        f"`{json.dumps(meta['sp2ot_params'])}`",
        f"- Total wall time: {meta.get('wall_seconds', float('nan')) / 60:.1f} min",
        "",
        "Methods (each given only `n_clusters` = number of true classes and "
        "`random_state=seed` where it has one): `SP2OT` = `SP2OTClustering()` defaults; "
        "`start` = `SP2OTClustering(max_epochs=0)`, the estimator's start without "
        "training; `balanced`, `uot`, `pot`, `p2ot` = "
        "`SP2OTClustering(**skclust_ot.VARIANTS[name])` (only with `--methods`); "
        "`KMeans(n_init=10)`; `GaussianMixture()`; `Ward` = "
        "`AgglomerativeClustering(linkage='ward')`; `Spectral` = "
        "`SpectralClustering(affinity='nearest_neighbors', n_neighbors=15)` (k-means "
        "label assignment); `Spectral-qr` = the same with `assign_labels='cluster_qr'`; "
        f"Spectral eigen solver: {spectral_note}; "
        "`HDBSCAN()` (chooses its own number of clusters; its noise label -1 counts as one "
        "more predicted cluster for the metrics, and 'all K non-empty' means exactly K "
        "labels found). Metrics from `skclust_ot.metrics.clustering_report`: BA = "
        "Hungarian-matched recall averaged over classes (the paper's ACC), F1 = macro-F1 "
        "after matching, NMI, ARI, Acc = overall matched accuracy, head/med/tail = mean "
        "class accuracy over the largest 30 % / next 40 % / smallest 30 % of classes. "
        "Cells: mean ± std over seeds. fit s = wall seconds of `fit_predict`.",
        "",
        "Cases are split into a **tuning** half and a **validation** half by the seeded rule "
        f"of `benchmarks/cases.py:split_halves` (SPLIT_SEED = {meta.get('split_seed', '?')}), "
        "fixed before anything was tuned: choose on the tuning half only; the validation "
        "half checks that the choice carries over.",
        "",
        "## The halves side by side (mean over cases of the per-case means)",
        "",
        "'≥KM−0.01 (BA/F1)': on how many cases the method's mean over seeds is at least "
        "KMeans's minus 0.01. Oracle: the best classical method of each case, chosen "
        "after the fact.",
        "",
        halves_table(results, agg, halves, where),
        "",
        headline_lines(results, agg, halves, where),
        "",
        "## By kind of data",
        "",
        "Means over the cases of each kind (per-case means over seeds first). A rule "
        "that helps one kind and hurts another is not a default.",
        "",
        kinds_table(results, agg, halves, where),
        "",
    ]
    for h in halves:
        head += [f"## Summary, {h} half ({len(by_half[h])} cases)", "",
                 "'all K non-empty (runs)': runs in which every one of the K clusters "
                 "received at least one sample. fit s: over runs.", "",
                 summary_table(results, agg, by_half[h]), ""]
    head += ["## Supervised ceiling and per-case headline", "",
             ceiling_table(results, agg, [c for h in halves for c in by_half[h]]), ""]
    for h in halves:
        head += [f"## Per case, {h} half", "", per_case_tables(results, agg, by_half[h])]
    return "\n".join(head)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def _git(*args):
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def _source_hash():
    """SHA-256 (first 12 hex) of skclust_ot/**/*.py as imported: the tree may be dirty."""
    digest = hashlib.sha256()
    root = REPO / "skclust_ot"
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _nproc():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"cases {','.join(QUICK_CASES)} with seed 0 (unless given)")
    p.add_argument("--cases", help=f"comma-separated, from {','.join(CASES)}")
    p.add_argument("--half", choices=["tuning", "validation", "both"], default="both",
                   help="cases of this half of cases.split_halves() (default both); "
                        "with --cases, keeps only the listed cases in that half")
    p.add_argument("--methods", help=f"comma-separated, from {','.join(ALL_METHODS)} "
                                     f"(default {','.join(DEFAULT_METHODS)})")
    p.add_argument("--seeds", help="comma-separated ints (default 0,1,2; --quick: 0)")
    p.add_argument("--out", default=str(REPO / "docs" / "quality_benchmark.md"),
                   help="markdown output; raw results go to the same name with .json")
    p.add_argument("--sp2ot-params", default="{}",
                   help="JSON dict of extra SP2OTClustering parameters for SP2OT, start "
                        "and ablations")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and BLAS threads per process (default 1)")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes running (case, seed) jobs (default 1); each is "
                        "seeded only by its seed, so results match --jobs 1")
    p.add_argument("--resume", action="store_true",
                   help="reuse successful runs already in the JSON output with the same settings")
    p.add_argument("--from-json", help="only re-render the tables from this raw-results JSON")
    return p.parse_args(argv)


_LIMITS = None


def _init_worker(threads):
    """Each process: torch and BLAS/OpenMP limited to ``threads`` (kept for its life)."""
    global _LIMITS
    torch.set_num_threads(threads)
    _LIMITS = threadpool_limits(limits=threads)


def run_job(case, seed, methods, sp2ot_params, previous):
    """Build one (case, seed) and fit every method on it; never raises.

    ``previous``: {method: record} of runs to reuse (``--resume``).
    Returns a dict with the case description, the ceiling and the run records.
    """
    out = {"case": case, "seed": seed, "runs": [], "info": None, "ceiling": None}
    try:
        t0 = time.perf_counter()
        X, y, _ = CASES[case](seed)
        build_s = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001
        print(f"[bench] {case} seed {seed}: building the case failed: {exc}", flush=True)
        for method in methods:
            out["runs"].append({"method": method, "seed": seed, "ok": False,
                                "error": f"case build: {type(exc).__name__}: {exc}"[:500]})
        return out
    out["info"] = dict(n_samples=int(X.shape[0]), n_features=int(X.shape[1]),
                       n_classes=int(len(np.unique(y))), class_sizes=np.bincount(y).tolist(),
                       build_seconds=build_s)
    ceil = supervised_ceiling(X, y, seed)
    ceil["seed"] = seed
    out["ceiling"] = ceil
    for method in methods:
        rec = previous[method] if method in previous else run_one(method, X, y, seed,
                                                                  sp2ot_params)
        out["runs"].append(rec)
        status = (f"BA {rec['balanced_accuracy']:.3f} F1 {rec['macro_f1']:.3f} "
                  f"NMI {rec['nmi']:.3f} found {rec['n_clusters_found']}/"
                  f"{rec['n_classes']} {rec['fit_seconds']:.1f}s"
                  if rec.get("ok") else f"FAILED {rec['error'][:200]}")
        print(f"[bench] {case:22s} seed {seed} {method:16s} {status}", flush=True)
    return out


def _run_job_star(args):
    return run_job(*args)


def main(argv=None):
    args = parse_args(argv)
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        text = render(results)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        return 0

    halves = split_halves()
    cases = args.cases.split(",") if args.cases else (QUICK_CASES if args.quick else list(CASES))
    if args.half != "both":
        cases = [c for c in cases if c in halves[args.half]]
    methods = args.methods.split(",") if args.methods else DEFAULT_METHODS
    seeds = ([int(s) for s in args.seeds.split(",")] if args.seeds
             else ([0] if args.quick else [0, 1, 2]))
    unknown = [c for c in cases if c not in CASES] + [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise SystemExit(f"unknown case/method: {unknown}; cases {list(CASES)}, "
                         f"methods {ALL_METHODS}")
    if not cases:
        raise SystemExit(f"no case left (--half {args.half})")
    sp2ot_params = json.loads(args.sp2ot_params)
    if not isinstance(sp2ot_params, dict):
        raise SystemExit("--sp2ot-params must be a JSON object")
    try:  # fail fast on a typo rather than after an hour of recorded failures
        SP2OTClustering(**sp2ot_params)
    except TypeError as exc:
        raise SystemExit(f"--sp2ot-params: {exc}") from None

    out_md = Path(args.out)
    out_json = out_md.with_suffix(".json")
    out_md.parent.mkdir(parents=True, exist_ok=True)

    previous = {}
    if args.resume and out_json.exists():
        old = json.loads(out_json.read_text())
        if old["meta"].get("sp2ot_params") == sp2ot_params:
            for case, cr in old["cases"].items():
                for r in cr["runs"]:
                    if r.get("ok"):
                        previous[(case, r["method"], r["seed"])] = r
            print(f"[bench] resuming: {len(previous)} successful runs reused", flush=True)

    # Sentence embeddings are computed once here, with all cores, before any worker starts.
    prepare_embeddings(cases)

    command = "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]) \
        if argv is None else "bench_quality.main(" + repr(argv) + ")"
    dirty = bool(_git("status", "--porcelain", "--", "skclust_ot").strip())
    from cases import SPLIT_SEED

    meta = {
        "command": command,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": dirty,
        "skclust_ot_source_sha256": _source_hash(),
        "machine": f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        "nproc": _nproc(),
        "torch_version": torch.__version__,
        "torch_threads": args.threads,
        "blas_threads": args.threads,
        "jobs": args.jobs,
        "sklearn_version": __import__("sklearn").__version__,
        "seeds": seeds,
        "cases": cases,
        "half": args.half,
        "split_seed": SPLIT_SEED,
        "halves": halves,
        "methods": methods,
        "sp2ot_params": sp2ot_params,
        "spectral_eigen_solver": (
            f"'amg' (pyamg {__import__('pyamg').__version__}) on cases with >= "
            f"{AMG_MIN_SAMPLES} rows, ARPACK (the default) below" if HAS_PYAMG else
            "ARPACK (the default) on every case (pyamg not installed)"),
    }
    results = {"meta": meta, "cases": {c: {"runs": [], "ceiling": []} for c in cases}}
    t_start = time.perf_counter()

    jobs = [(case, seed, methods, sp2ot_params,
             {m: previous[(case, m, seed)] for m in methods if (case, m, seed) in previous})
            for case in cases for seed in seeds]
    done = {}

    def collect(out):
        done[(out["case"], out["seed"])] = out
        # Rebuild every case in (case, seed) order, so the JSON does not depend on
        # which worker finished first.
        for case in cases:
            case_res = {"runs": [], "ceiling": []}
            for seed in seeds:
                o = done.get((case, seed))
                if o is None:
                    continue
                if o["info"]:
                    case_res.update(o["info"])
                if o["ceiling"]:
                    case_res["ceiling"].append(o["ceiling"])
                case_res["runs"] += o["runs"]
            _finish_case(case_res)
            results["cases"][case] = case_res
        meta["wall_seconds"] = time.perf_counter() - t_start
        out_json.write_text(json.dumps(results, indent=1))

    if args.jobs <= 1:
        _init_worker(args.threads)
        for job in jobs:
            collect(run_job(*job))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(args.jobs, initializer=_init_worker, initargs=(args.threads,),
                      maxtasksperchild=None) as pool:
            for out in pool.imap_unordered(_run_job_star, jobs):
                collect(out)

    meta["wall_seconds"] = time.perf_counter() - t_start
    out_json.write_text(json.dumps(results, indent=1))
    text = render(results)
    print(text)
    out_md.write_text(text + "\n")
    print(f"\n[bench] wrote {out_md} and {out_json}", flush=True)
    return 0


def _finish_case(case_res):
    vals = [c["balanced_accuracy"] for c in case_res["ceiling"] if c.get("ok")]
    case_res["ceiling_mean_std"] = list(_mean_std(vals)) if vals else None


if __name__ == "__main__":
    sys.exit(main())
