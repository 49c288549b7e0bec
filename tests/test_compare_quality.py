"""benchmarks/compare_quality.py on hand-made result files (no fits)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
compare_quality = pytest.importorskip("compare_quality")
cases = pytest.importorskip("cases")


def _results(values, method="SP2OT"):
    """{case: [(seed, BA, F1), ...]} -> a bench_quality result dict."""
    return {"meta": {}, "cases": {
        case: {"runs": [{"method": method, "seed": s, "ok": True, "balanced_accuracy": ba,
                         "macro_f1": f1} for s, ba, f1 in runs]}
        for case, runs in values.items()}}


def test_compares_paired_seeds_of_the_tuning_half_only(tmp_path, capsys):
    halves = cases.split_halves()
    t1, t2 = halves["tuning"][:2]
    v1 = halves["validation"][0]
    new = _results({t1: [(0, 0.6, 0.5), (1, 0.8, 0.7), (2, 0.1, 0.1)],  # seed 2 not in old
                    t2: [(0, 0.40, 0.40)], v1: [(0, 0.9, 0.9)]})
    old = _results({t1: [(0, 0.5, 0.5), (1, 0.5, 0.5)], t2: [(0, 0.42, 0.40)],
                    v1: [(0, 0.1, 0.1)]})
    paths = []
    for name, res in (("new.json", new), ("old.json", old)):
        paths.append(tmp_path / name)
        paths[-1].write_text(json.dumps(res))
    compare_quality.main([str(p) for p in paths])
    out = capsys.readouterr().out
    assert "2 cases (paired seeds)" in out
    assert v1 not in out  # the validation half is left out unless asked for
    row = next(line for line in out.splitlines() if line.startswith(f"| {t1} |"))
    # seeds 0 and 1 only: new 0.7 / 0.6, old 0.5 / 0.5
    assert "| 2 | 0.700 / 0.600 | 0.500 / 0.500 | +0.200 / +0.100 |" in row
    assert "mean Δ BA / F1: +0.0900 / +0.0500" in out  # (+0.2 - 0.02) / 2, (0.1 + 0) / 2
    assert "better by more than 0.005: 1 cases; worse: 1" in out

    compare_quality.main([str(p) for p in paths] + ["--half", "validation"])
    out = capsys.readouterr().out
    assert f"| {v1} |" in out and "+0.800 / +0.800" in out and "choose nothing by it" in out


def test_no_common_case_is_an_error(tmp_path):
    t1 = cases.split_halves()["tuning"][0]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_results({t1: [(0, 0.5, 0.5)]})))
    b.write_text(json.dumps(_results({t1: [(0, 0.5, 0.5)]}, method="start")))
    with pytest.raises(SystemExit, match="no case of the tuning half"):
        compare_quality.main([str(a), str(b)])
