"""The layout a newcomer reads first stays true: README's stage table names exactly the engine's modules, and no
engine module grows past about 300 lines (issue 10's acceptance)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "clipasso_engine"
#: "About 300 lines": a little slack, so that one more docstring line is not a failure, but a new concept is.
MOST_LINES = 340


def _stage_table_modules() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("### The engine, stage by stage")
    table = readme[start : readme.index("\n## ", start)]
    return set(re.findall(r"`(\w+\.py)`", table))


def test_readme_stage_table_names_every_engine_module() -> None:
    modules = {p.name for p in ENGINE.glob("*.py")} - {"__init__.py", "__main__.py", "version.py"}
    listed = _stage_table_modules()
    assert modules - listed == set(), "modules missing from README's stage table"
    assert listed - modules == set(), "README's stage table names modules that do not exist"


def test_no_engine_module_is_a_second_concept_long() -> None:
    long = {
        p.name: n for p in ENGINE.glob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > MOST_LINES
    }
    assert long == {}, long
