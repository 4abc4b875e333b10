"""Where runs are recorded: one MLflow store per repository, shared by every stage and worker.

Default: a SQLite database and an artifact folder at the repository root. ``MLFLOW_TRACKING_URI``
overrides it (e.g. an MLflow server backed by PostgreSQL for many machines).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

DB_NAME, ARTIFACTS_NAME = "mlflow.db", "mlartifacts"


def repo_root(default: Path) -> Path:
    """The repository root: ``DVC_ROOT`` when DVC runs us (queue workers run in temp copies, but
    DVC points this at the real repository), else ``default``."""
    return Path(os.environ.get("DVC_ROOT") or default).resolve()


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<root>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / DB_NAME}"


def use_store(uri: str, experiment: str, artifact_root: Path | None) -> str:
    """Point MLflow at ``uri`` and select (creating if needed) ``experiment``; return its id.

    A new experiment keeps artifacts under ``artifact_root/<experiment id>`` when given (needed
    for local stores, so runs from any working directory land in the same folder).
    """
    import mlflow

    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        location = artifact_root.as_uri() if artifact_root and not uri.startswith("http") else None
        # another worker may create it between our lookup and create
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            mlflow.create_experiment(experiment, artifact_location=location)
        found = mlflow.get_experiment_by_name(experiment)
    mlflow.set_experiment(experiment_id=found.experiment_id)  # fluent calls default to it
    return found.experiment_id
