"""Per-case comparison of two quality-benchmark result files (the JSON beside the page).

Usage::

    python benchmarks/bench_quality.py --half tuning --methods SP2OT,start --out /tmp/new.md \\
        --sp2ot-params '{"kl_weight": 0.3}'
    python benchmarks/compare_quality.py /tmp/new.json docs/quality_benchmark.json
    python benchmarks/compare_quality.py /tmp/new.json /tmp/old.json --method start

A variant is judged case by case, not only by its mean: for each case both files
ran, the mean over the seeds both ran (paired seeds) of BA and macro-F1 in each
file, their difference, and how many cases moved by more than ``--threshold``
either way; then the differences averaged by kind of data (a rule that helps one
kind and hurts another is not a default).

Only the **tuning half** is compared unless ``--half`` says otherwise: defaults
are chosen there, and the validation half is for checking, once, what was
chosen (``cases.split_halves``).
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import KIND, split_halves  # noqa: E402


def _means(pairs):
    """The means of the first and of the second items of ``pairs``."""
    return tuple(sum(p[i] for p in pairs) / len(pairs) for i in (0, 1))


def paired_means(new, old, method):
    """{case: (new BA, new F1, old BA, old F1, n seeds)} over the seeds both files ran."""
    def runs(results):
        out = {}
        for case, case_res in results["cases"].items():
            for r in case_res["runs"]:
                if r["method"] == method and r.get("ok"):
                    out.setdefault(case, {})[r["seed"]] = (r["balanced_accuracy"], r["macro_f1"])
        return out

    a, b = runs(new), runs(old)
    table = {}
    for case in a.keys() & b.keys():
        seeds = sorted(a[case].keys() & b[case].keys())
        if not seeds:
            continue
        table[case] = (*_means([a[case][s] for s in seeds]),
                       *_means([b[case][s] for s in seeds]), len(seeds))
    return table


def compare(new, old, *, method="SP2OT", half="tuning", threshold=0.005):
    """The comparison as markdown lines."""
    halves = split_halves()
    wanted = set(halves["tuning"]) | set(halves["validation"]) if half == "both" \
        else set(halves[half])
    table = {c: v for c, v in paired_means(new, old, method).items() if c in wanted}
    if not table:
        raise SystemExit(f"no case of the {half} half has successful {method} runs in both files")
    lines = [f"{method}, {half} half: {len(table)} cases (paired seeds)", "",
             "| case | kind | seeds | new BA / F1 | old BA / F1 | Δ BA / F1 |",
             "|---|---|---:|---:|---:|---:|"]
    by_kind = {}
    for case in sorted(table, key=lambda c: (KIND.get(c, "?"), c)):
        nb, nf, ob, of, n = table[case]
        kind = KIND.get(case, "?")
        by_kind.setdefault(kind, []).append((nb - ob, nf - of))
        lines.append(f"| {case} | {kind} | {n} | {nb:.3f} / {nf:.3f} | {ob:.3f} / {of:.3f} "
                     f"| {nb - ob:+.3f} / {nf - of:+.3f} |")
    diffs = [d for ds in by_kind.values() for d in ds]
    mean_ba, mean_f1 = _means(diffs)
    better = sum(d[0] > threshold for d in diffs)
    worse = sum(d[0] < -threshold for d in diffs)
    kinds = [(kind, len(ds), *_means(ds)) for kind, ds in sorted(by_kind.items())]
    lines += ["", f"- mean Δ BA / F1: {mean_ba:+.4f} / {mean_f1:+.4f}",
              f"- BA better by more than {threshold}: {better} cases; worse: {worse}; "
              f"the rest within ±{threshold}",
              "- by kind (mean Δ BA / F1): " + "; ".join(
                  f"{kind} ({n}) {ba:+.3f} / {f1:+.3f}" for kind, n, ba, f1 in kinds)]
    if half != "tuning":
        lines.append("- the validation half is for checking what was chosen, once: "
                     "choose nothing by it")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("new", type=Path, help="result JSON of the variant")
    p.add_argument("old", type=Path, help="result JSON to compare against")
    p.add_argument("--method", default="SP2OT", help="method name in both files (default SP2OT)")
    p.add_argument("--half", choices=["tuning", "validation", "both"], default="tuning")
    p.add_argument("--threshold", type=float, default=0.005,
                   help="a case counts as better or worse beyond this BA difference")
    args = p.parse_args(argv)
    new, old = (json.loads(path.read_text()) for path in (args.new, args.old))
    print("\n".join(compare(new, old, method=args.method, half=args.half,
                            threshold=args.threshold)))


if __name__ == "__main__":
    main()
