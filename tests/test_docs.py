"""The docs stay true to the tree: the README's quick start is what CI runs, ARCHITECTURE.md names every module."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_start_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("  #")[0].rstrip() for line in block.splitlines() if line.strip()]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands and all(c in ci for c in commands), (commands, ci)


def test_architecture_lists_every_module():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    listed = set(re.findall(r"^\| `([\w/]+\.py)` \|", text, re.M))
    modules = {str(p.relative_to(ROOT / "cfcompile")) for p in (ROOT / "cfcompile").rglob("*.py")
               if p.name != "__init__.py"}
    assert modules - listed == set(), f"modules missing from docs/ARCHITECTURE.md: {sorted(modules - listed)}"
    assert listed - modules == set(), f"docs/ARCHITECTURE.md names modules that do not exist: {sorted(listed - modules)}"
