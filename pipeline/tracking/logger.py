"""Lightning's MLFlowLogger bound to a run we started ourselves."""

from __future__ import annotations


def run_logger(tracking_uri: str, experiment: str, run_id: str) -> object:
    """An ``MLFlowLogger`` writing into run ``run_id``.

    The URI must be explicit: Lightning 2.6 otherwise defaults to ``file:./mlruns``, which MLflow
    >= 3.13 refuses. Passing ``run_id`` makes Lightning's per-epoch metrics land in the same run as
    our params, inputs and models.
    """
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(experiment_name=experiment, tracking_uri=tracking_uri, run_id=run_id)
