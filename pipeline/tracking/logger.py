"""Lightning's MLFlowLogger bound to a run we started ourselves, optionally buffered."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger

from pipeline.tracking.lineage import flatten

# MLflow's limits per log_batch call.
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100


class BufferedMLFlowLogger(MLFlowLogger):
    """MLFlowLogger that keeps metrics, params and tags in memory and writes them in one
    ``log_batch`` when training ends; the run's owner (who started it) also ends it.

    Lightning logs twice per epoch; against a SQLite store each write is a transaction of ~3-10 ms,
    and the stock logger also re-reads the run twice and marks it terminated, which for a short run
    (an Optuna trial, an arm on a few labels) cost as much as the training itself (profiled with
    tests/benchmarks/bench_tune.py). The metrics, steps and timestamps are the same; they
    arrive at the end (also when training fails: Lightning finalizes the logger then), or every
    ``flush_every`` seconds in a long run, so that the MLflow UI follows it and an interrupt
    writes at most that much on its way out (a 14-minute run, one write at the end, took 3
    minutes to exit).
    """

    def __init__(
        self, *args: Any, flush_on_finalize: bool = True, flush_every: float = 30.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.flush_on_finalize, self.flush_every = flush_on_finalize, flush_every
        self._flushed_at = time.monotonic()
        from mlflow import MlflowClient

        self._client = MlflowClient(self._tracking_uri)
        self._metrics: list = []
        self._params: dict[str, str] = {}
        self._tags: dict[str, str] = {}

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._metrics += [
            Metric(key=k, value=float(v), timestamp=now, step=step or 0)
            for k, v in metrics.items()
            if not isinstance(v, str)
        ]
        if time.monotonic() - self._flushed_at >= self.flush_every:
            self.flush()

    def log_hyperparams(self, params: Mapping[str, Any] | Any) -> None:
        if not isinstance(params, Mapping):
            params = vars(params)
        self._params.update({k: str(v)[:6000] for k, v in flatten(dict(params)).items()})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Buffer run tags; written with the next :meth:`flush`."""
        self._tags.update({k: str(v) for k, v in tags.items()})

    def flush(self) -> None:
        """Write everything buffered so far to the run (one ``log_batch`` when it fits)."""
        from mlflow.entities import Param, RunTag

        params = [Param(k, v) for k, v in self._params.items()]
        tags = [RunTag(k, v) for k, v in self._tags.items()]
        metrics = self._metrics
        self._metrics, self._params, self._tags = [], {}, {}
        self._flushed_at = time.monotonic()
        while metrics or params or tags:
            self._client.log_batch(
                run_id=self._run_id,
                metrics=metrics[:MAX_METRICS],
                params=params[:MAX_PARAMS],
                tags=tags[:MAX_TAGS],
            )
            metrics, params, tags = metrics[MAX_METRICS:], params[MAX_PARAMS:], tags[MAX_TAGS:]

    def finalize(self, status: str = "success") -> None:
        # Flush only: the run was started by the stage, which sets its final status. With
        # flush_on_finalize=False the owner adds its results and calls flush() itself.
        if self.flush_on_finalize:
            self.flush()


def run_logger(
    tracking_uri: str, experiment: str, run_id: str, buffered: bool = False, **kwargs: Any
) -> MLFlowLogger:
    """An ``MLFlowLogger`` writing into run ``run_id`` (buffered: one write at the end; extra
    ``kwargs`` go to :class:`BufferedMLFlowLogger`).

    The URI must be explicit: Lightning 2.6 otherwise defaults to ``file:./mlruns``, which MLflow
    >= 3.13 refuses. Passing ``run_id`` makes Lightning's per-epoch metrics land in the same run as
    our params, inputs and models.
    """
    cls = BufferedMLFlowLogger if buffered else MLFlowLogger
    return cls(experiment_name=experiment, tracking_uri=tracking_uri, run_id=run_id, **kwargs)
