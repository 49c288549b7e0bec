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
