"""Lightning's MLFlowLogger bound to a run we started ourselves, optionally buffered."""

from __future__ import annotations

import time
from collections.abc import Mapping

from lightning.pytorch.loggers import MLFlowLogger


class BufferedMLFlowLogger(MLFlowLogger):
    """MLFlowLogger that keeps metrics in memory and writes them in one batch when training ends.

    Lightning logs twice per epoch; against a SQLite store each write is a transaction of ~10 ms,
    which for a short run (a trial, an arm on a few labels) took as long as the training itself
    (profiled in tests/benchmarks/bench_tune.py). The metrics, steps and timestamps are the same;
    they only arrive at the end (also when training fails: Lightning finalizes the logger then).
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._pending: list = []

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [
            Metric(key=k, value=float(v), timestamp=now, step=step or 0)
            for k, v in metrics.items()
            if not isinstance(v, str)
        ]

    def flush(self) -> None:
        for i in range(0, len(self._pending), 1000):  # MLflow's limit per batch
            self.experiment.log_batch(run_id=self.run_id, metrics=self._pending[i : i + 1000])
        self._pending = []

    def finalize(self, status: str = "success") -> None:
        if self._pending:
            self.flush()
        super().finalize(status)


def run_logger(
    tracking_uri: str, experiment: str, run_id: str, buffered: bool = False
) -> MLFlowLogger:
    """An ``MLFlowLogger`` writing into run ``run_id`` (buffered: one write at the end).

    The URI must be explicit: Lightning 2.6 otherwise defaults to ``file:./mlruns``, which MLflow
    >= 3.13 refuses. Passing ``run_id`` makes Lightning's per-epoch metrics land in the same run as
    our params, inputs and models.
    """
    cls = BufferedMLFlowLogger if buffered else MLFlowLogger
    return cls(experiment_name=experiment, tracking_uri=tracking_uri, run_id=run_id)
