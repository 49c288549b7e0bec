"""The start-choice experiment's table, on hand-made runs (no fits)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench = pytest.importorskip("bench_start_choice")


def _fit(ba, score, silhouette=0.5):
    return {"ba": ba, "f1": ba - 0.1, "score": score, "embedding_silhouette": silhouette,
            "last_loss": 0.2, "trained_input_silhouette": silhouette,
            "start_input_silhouette": silhouette}


def test_each_rule_averages_per_case_first_and_names_the_cases_it_switches():
    runs = [
        # case a: spectral better (0.8 vs 0.6), and more confident (score)
        {"case": "a", "seed": 0, "spectral": _fit(0.8, -0.1), "kmeans": _fit(0.6, -0.2)},
        # case b, two seeds: k-means better and more confident on one seed only
        {"case": "b", "seed": 0, "spectral": _fit(0.4, -0.3), "kmeans": _fit(0.6, -0.1)},
        {"case": "b", "seed": 1, "spectral": _fit(0.4, -0.1), "kmeans": _fit(0.5, -0.2)},
    ]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:]
            for line in bench.summarize(runs).splitlines()[2:]}
    # per-case means first: (0.8 + mean(0.4, 0.4)) / 2
    assert rows["always spectral (the default)"][:3] == ["0.600", "0.500", "0 / 3"]
    assert rows["always k-means"][:3] == ["0.575", "0.475", "3 / 3"]
    score = rows["score of the trained model (higher)"]
    assert score[:3] == ["0.650", "0.550", "1 / 3"] and score[3].startswith("b ")
    # (0.8 + mean(0.6, 0.5)) / 2
    assert rows["oracle (the better fit of each run, by BA)"][0] == "0.675"
