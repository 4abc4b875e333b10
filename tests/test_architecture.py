"""Imports flow one way: stages -> pipeline, never back; stage files stay one screen long."""

import ast
from pathlib import Path

from tests.conftest import REPO


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_library_never_imports_the_stages_or_hydra():
    for path in (REPO / "pipeline").rglob("*.py"):
        bad = {n for n in _imports(path) if n.split(".")[0] in ("stages", "hydra", "omegaconf")}
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_stage_entry_points_read_on_one_screen():
    for path in (REPO / "stages").glob("[!_]*.py"):
        assert len(path.read_text().splitlines()) <= 160, path.name
