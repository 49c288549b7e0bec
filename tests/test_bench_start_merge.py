"""The over-clustering experiment's table, on hand-made runs, and its synthetic blobs."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench = pytest.importorskip("bench_start_merge")


def _run(family, case, kway, merged, start):
    return {"family": family, "case": case, "k-way": kway, "always merged": merged,
            "ratio-cut guard": kway, "silhouette guard": kway, "start": start}


def test_real_cases_average_per_case_first_and_blobs_count_draws_against_k_way():
    runs = [
        _run("real cases", "a", (0.8, 0.7), (0.6, 0.5), (0.8, 0.7)),
        _run("real cases", "b", (0.4, 0.3), (0.6, 0.5), (0.6, 0.5)),
        _run("real cases", "b", (0.4, 0.3), (0.8, 0.7), (0.4, 0.3)),
        _run("two blobs", "two blobs 0", (0.9, 0.8), (0.5, 0.4), (0.9, 0.8)),
        _run("two blobs", "two blobs 1", (0.5, 0.4), (0.9, 0.8), (0.505, 0.4)),
    ]
    rows = {tuple(line.split(" | ")[:2]): line.split(" | ")[2:]
            for line in bench.summarize(runs).splitlines()[2:]}
    # per-case means first: (0.6 + mean(0.6, 0.8)) / 2
    assert rows[("| real cases", "always merged")][:2] == ["0.650", "0.550"]
    assert rows[("| real cases", "start")][:2] == ["0.650", "0.550"]
    assert rows[("| real cases", "k-way")][2] == " |"  # no counts for real cases
    assert rows[("| two blobs", "always merged")][2] == "1 / 1 of 2 |"
    assert rows[("| two blobs", "start")][2] == "0 / 0 of 2 |"  # 0.505: within 0.01


def test_the_synthetic_families_have_their_documented_sizes_and_are_seeded():
    X, y = bench.blobs("three blobs", 3)
    sizes = np.bincount(y)
    assert X.shape[1] == 4 and 40 <= sizes[0] < 120 and 15 <= sizes[1] < 40 and 4 <= sizes[2] < 12
    X2, y2 = bench.blobs("two blobs", 3)
    assert 100 <= np.bincount(y2)[0] < 400 and 5 <= np.bincount(y2)[1] < 25
    np.testing.assert_array_equal(bench.blobs("two blobs", 3)[0], X2)


def test_the_estimator_table_counts_draws_against_the_k_way_start():
    fits = [{"family": "two blobs", "case": "two blobs 0", "spectral": (0.5, 0.4),
             "spectral_kway": (0.9, 0.8), "kmeans": (0.95, 0.9)},
            {"family": "two blobs", "case": "two blobs 1", "spectral": (0.9, 0.8),
             "spectral_kway": (0.9, 0.8), "kmeans": (0.7, 0.6)}]
    rows = {line.split(" | ")[1]: line.split(" | ")[2:]
            for line in bench.summarize_fits(fits).splitlines()[2:]}
    assert rows["spectral"] == ["0.700", "0.600", "1 / 0 of 2 |"]
    assert rows["spectral_kway"] == ["0.900", "0.800", "0 / 0 of 2 |"]
    assert rows["kmeans"] == ["0.825", "0.750", "1 / 1 of 2 |"]
