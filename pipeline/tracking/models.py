"""MLflow LoggedModels that hold safetensors weights, loadable without pickle.

``mlflow.pytorch.log_model`` defaults to the ``pt2`` export format, which cannot be fine-tuned, and
its pickle format runs code on load. A LoggedModel whose artifacts are a safetensors file plus a
JSON model spec can be fine-tuned and is safe to load. Each is also a pyfunc model (models-from-
code, :mod:`pipeline.serving`): ``mlflow.pyfunc.load_model("models:/<model_id>")`` and ``mlflow
models serve`` take image files and return class names and probabilities.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from pipeline.models.weights import save_weights
from pipeline.serving.package import save_pyfunc

WEIGHTS, SPEC = "weights.safetensors", "model.json"


def log_weights_model(
    name: str,
    model: nn.Module,
    spec: dict,
    *,
    params: dict[str, object] | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """Log ``model`` as a READY LoggedModel of the active run; return its model id.

    Args:
        name: Model name shown in the MLflow UI.
        model: The network; its state dict is stored as safetensors.
        spec: What is needed to rebuild it (model config, classes, ...), stored as JSON and in the
            safetensors metadata.
        params: Model params (flattened config) shown on the model page.
        tags: Model tags, e.g. ``graftlab.source_model_id`` for lineage.
    """
    import mlflow
    from mlflow import MlflowClient

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_weights_model needs an active MLflow run")
    logged = mlflow.initialize_logged_model(
        name=name,
        source_run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,  # else MLflow's default experiment and ./mlruns
        model_type="graftlab.GroupedNet",
        tags=tags or {},
        params={k: str(v) for k, v in (params or {}).items()},
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            save_weights(model, Path(tmp) / WEIGHTS, metadata=spec)
            save_pyfunc(Path(tmp) / "pyfunc", Path(tmp) / WEIGHTS, spec)
            MlflowClient().log_model_artifacts(logged.model_id, str(Path(tmp) / "pyfunc"))
    except BaseException:
        mlflow.finalize_logged_model(logged.model_id, "FAILED")
        raise
    mlflow.finalize_logged_model(logged.model_id, "READY")
    return logged.model_id


def publish_model(
    name: str,
    model: nn.Module,
    path: Path,
    spec: dict,
    *,
    tags: dict[str, str],
    metrics: dict[str, float],
) -> str:
    """Write ``model``'s weights to ``path`` and log them as a LoggedModel of the active run with
    ``metrics`` on it; return the model id."""
    import mlflow

    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, path, metadata=spec)
    model_id = log_weights_model(name, model, spec, tags=tags)
    mlflow.log_metrics(metrics, model_id=model_id)
    return model_id
