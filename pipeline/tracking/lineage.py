"""Tags that tie a run to its code, pipeline stage and experiment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pipeline import __version__
from pipeline.tracking.owners import owner_tags


def git_state(root: Path) -> dict[str, str]:
    """Commit hash, branch and whether the work tree has uncommitted changes (empty if no git)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {
        "mlflow.source.git.commit": commit,
        "mlflow.source.git.branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "graftlab.git_dirty": str(bool(dirty)).lower(),
    }


def stage_tags(stage: str, root: Path) -> dict[str, str]:
    """Tags every run of ``stage`` carries: git state, DVC stage and DVC experiment name."""
    tags = {
        "graftlab.stage": stage,
        "graftlab.version": __version__,
        "mlflow.source.name": f"stages.{stage}",
        "mlflow.source.type": "JOB",
        **git_state(root),
        **owner_tags(),  # so a run left RUNNING by a killed process can be told from a live one
    }
    if os.environ.get("DVC_STAGE"):
        tags["dvc.stage"] = os.environ["DVC_STAGE"]
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        tags["dvc.exp_baseline_rev"] = os.environ["DVC_EXP_BASELINE_REV"]
    return tags


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """Nested dict -> ``{"a.b.c": value}`` (lists kept as values), for MLflow params."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
