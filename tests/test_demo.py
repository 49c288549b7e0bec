"""The README's demo runs and prints a comparison table."""

import importlib.util
import subprocess
import sys


def test_demo_runs_and_reports_metrics(tmp_path):
    picture = tmp_path / "demo.png"
    result = subprocess.run(
        [sys.executable, "-m", "skclust_ot.demo", "--epochs", "3", "--quiet",
         "--plot", str(picture)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "SP2OTClustering" in out and "KMeans" in out
    assert "bal.acc" in out and "NMI" in out and "macro-F1" in out
    assert "true class sizes" in out
    if importlib.util.find_spec("matplotlib") is not None:
        assert picture.stat().st_size > 10_000
        assert str(picture) in out
