"""Tags that tie a run to its code, pipeline stage and experiment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pipeline import __version__
from pipeline.tracking.owners import owner_tags

# Files DVC writes during a run (besides the stage outputs listed in dvc.lock): a run that
# rewrote them is still a run of the committed code.
DVC_WRITTEN = ("dvc.lock", "params.yaml")


def generated_paths(root: Path | str) -> list[str]:
    """Paths DVC rewrites while a pipeline runs: ``dvc.lock``, ``params.yaml``, every stage output
    listed in ``dvc.lock`` (metrics and plots files committed to git are among them) and the
    ``.gitignore`` DVC keeps beside each output."""
    import yaml

    paths = list(DVC_WRITTEN)
    try:
        lock = yaml.safe_load((Path(root) / "dvc.lock").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return paths
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if "path" in out:  # DVC also lists cached outputs in a .gitignore beside them
                paths += [out["path"], (Path(out["path"]).parent / ".gitignore").as_posix()]
    return sorted(set(paths))


def git_state(root: Path | str) -> dict[str, str]:
    """Commit hash, branch and whether the code has uncommitted changes (empty if no git).

    Dirty means a tracked file other than what DVC itself rewrites (:func:`generated_paths`)
    differs from the commit: ``dvc repro`` rewrites dvc.lock and committed metrics mid-run, and
    ``dvc exp run -S`` rewrites params.yaml (the config is logged with every run anyway), so
    counting those would mark every run of a clean clone dirty. The changed files, if any, are
    listed in ``graftlab.git_dirty_files``.
    """

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    exclude = [f":(exclude){p}" for p in generated_paths(root)]
    files = git("diff", "--name-only", "HEAD", "--", ".", *exclude).splitlines()
    tags = {
        "mlflow.source.git.commit": commit,
        "mlflow.source.git.branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "graftlab.git_dirty": str(bool(files)).lower(),
    }
    if files:
        tags["graftlab.git_dirty_files"] = ", ".join(files)[:4000]
    return tags


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
