"""MLflow LoggedModels that hold safetensors weights, loadable without pickle.

``mlflow.pytorch.log_model`` defaults to the ``pt2`` export format, which cannot be fine-tuned, and
its pickle format runs code on load. A LoggedModel whose artifacts are a safetensors file plus a
JSON model spec can be fine-tuned and is safe to load. Each is also a pyfunc model (models-from-
code, :mod:`pipeline.serving`): ``mlflow.pyfunc.load_model("models:/<model_id>")`` and ``mlflow
models serve`` take image files and return class names and probabilities.

A model is recorded as an *output* of the run that trained it (MLflow 3's ``LoggedModelOutput``),
so the UI shows it under that run's logged models and the model's page links back to the run.
Metrics of a model are written with an explicit ``model_id`` through the client: MLflow's fluent
``log_metrics(model_id=...)`` records any model it does not yet see on the run as an *input* of
that run, which made trained models look like the inputs of the runs that produced them.
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
    from mlflow.entities import LoggedModelOutput

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
    MlflowClient().log_outputs(run.info.run_id, [LoggedModelOutput(logged.model_id, step=0)])
    return logged.model_id


def log_model_metrics(
    model_id: str,
    metrics: dict[str, float],
    *,
    run_id: str | None = None,
    dataset: tuple[str, str] | None = None,
) -> None:
    """Log ``metrics`` on model ``model_id`` (and on the run ``run_id``, default: the active one).

    Args:
        model_id: The LoggedModel the values describe.
        metrics: Name -> value; use the same names on every model (``val_acc``, ``test_acc``) so
            the UI's models table has one column to sort by.
        run_id: The run that computed them.
        dataset: ``(name, digest)`` of the dataset input they were computed on, if any.
    """
    import time

    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    run_id = run_id or mlflow.active_run().info.run_id
    now = int(time.time() * 1000)
    name, digest = dataset or (None, None)
    batch = [
        Metric(
            k,
            float(v),
            now,
            0,
            model_id=model_id,
            dataset_name=name,
            dataset_digest=digest,
            run_id=run_id,
        )
        for k, v in metrics.items()
    ]
    MlflowClient().log_batch(run_id, metrics=batch)


def publish_model(
    name: str,
    model: nn.Module,
    path: Path,
    spec: dict,
    *,
    tags: dict[str, str],
    metrics: dict[str, float],
    params: dict[str, object] | None = None,
) -> str:
    """Write ``model``'s weights to ``path`` and log them as a LoggedModel output of the active
    run with ``metrics`` (and ``params``, e.g. lineage ids) on it; return the model id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(model, path, metadata=spec)
    model_id = log_weights_model(name, model, spec, tags=tags, params=params)
    log_model_metrics(model_id, metrics)
    return model_id
