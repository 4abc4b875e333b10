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


def test_stages_that_do_not_train_never_load_lightning(tmp_path):
    """Start-up is the cost of a stage that has nothing to train: Lightning loads only where a
    fit runs (a skipped tune writes its outputs without it, or MLflow)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from omegaconf import OmegaConf\n"
        "from stages._shell import compose_conf, run_stage\n"
        "from stages import prepare, tune\n"
        "OmegaConf.save(OmegaConf.create(compose_conf()), 'params.yaml')\n"
        "run_stage('tune', tune.run, ['tune.enabled=false'])  # the CLI's path: config checks\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'mlflow'}))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "['mlflow']"  # prepare logs to MLflow; nothing else
    assert (tmp_path / "outputs/tune/best.yaml").exists()
