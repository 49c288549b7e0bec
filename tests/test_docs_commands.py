"""The documentation's commands run from any checkout (#15).

They are written from the repository root with the README's environment
(``.venv/bin/python``), never with one machine's absolute paths.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                *(ROOT / "docs").glob("*.rst")])
# an absolute path into a home, checkout or virtualenv folder of some machine
ABSOLUTE = re.compile(r"(?<![\w.:/])/(?:work|home|root|Users|opt|srv)/[\w.-]+")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_machine_specific_absolute_paths(page):
    found = ABSOLUTE.findall(page.read_text(encoding="utf-8"))
    assert not found, f"{page.name} names absolute paths {found}; write commands " \
        "from the repository root with .venv/bin/python (the README's environment)"


def test_reliability_commands_use_the_readmes_environment():
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert ".venv/bin/python -m pytest tests/test_ot_properties.py" in text


def test_readme_snippet_runs():
    """The README's "Try it" snippet defines its data and runs as written."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Try it", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S)[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert 0.0 < float(result.stdout.strip().splitlines()[-1]) <= 1.0
