"""Run an Optuna study to a total trial budget, from any number of workers, resumably.

Each worker runs one trial at a time until the study holds ``n_trials`` finished (COMPLETE or
PRUNED) plus running trials, so N workers on one storage share the budget and trial numbers stay
unique (the storage assigns them). A trial that raises or returns NaN is told FAIL and the loop
goes on, up to ``max_failures``. Journal storages have no heartbeat, so a trial left RUNNING by a
killed worker on this machine (its pid is gone) is marked FAIL and its parameters re-queued: a
re-run resumes the study where it stopped.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from pipeline.errors import TrainingError
from pipeline.processes import pid_alive

log = logging.getLogger(__name__)
WORKER_ATTR, REAPED_ATTR = "worker", "reaped"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def reap_dead_trials(study: optuna.Study) -> int:
    """Fail and re-queue RUNNING trials whose worker process on this host no longer exists."""
    host = socket.gethostname()
    reaped = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get(WORKER_ATTR, "")
        name, _, pid = worker.rpartition(":")
        if name != host or not pid.isdigit() or pid_alive(int(pid)):
            continue
        study._storage.set_trial_user_attr(t._trial_id, REAPED_ATTR, True)
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        log.warning("trial %d: its worker %s died; marked FAIL and re-queued", t.number, worker)
        reaped += 1
    return reaped


def counts(study: optuna.Study) -> dict[str, int]:
    """Number of trials by state (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
    out = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] += 1
    return out


def _failures(study: optuna.Study) -> list[FrozenTrial]:
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if not t.user_attrs.get(REAPED_ATTR)
    ]


def run_trials(
    study: optuna.Study,
    objective: Callable[[Trial], float],
    n_trials: int,
    *,
    max_failures: int = 5,
    timeout: float | None = None,
) -> None:
    """Work on ``study`` until it holds ``n_trials`` finished trials (all workers together).

    Raises:
        TrainingError: ``max_failures`` trials failed; the last error is in the message.
    """
    import time

    start = time.monotonic()
    reap_dead_trials(study)
    while True:
        c = counts(study)
        if c["COMPLETE"] + c["PRUNED"] + c["RUNNING"] >= n_trials:
            return
        failed = _failures(study)
        if len(failed) >= max_failures:
            reason = failed[-1].user_attrs.get("error", "see the trial's MLflow run")
            raise TrainingError(
                f"{len(failed)} trials failed (tune.max_failures={max_failures}); last: {reason}"
            )
        if timeout is not None and time.monotonic() - start > timeout:
            return
        study.optimize(_recorded(objective), n_trials=1, catch=(Exception,), gc_after_trial=False)


def _recorded(objective: Callable[[Trial], float]) -> Callable[[Trial], float]:
    """``objective`` that first tags the trial with its worker and records why it failed.

    ``study.optimize`` (one trial at a time) does the rest: PRUNED on ``TrialPruned``, FAIL on an
    exception or NaN, and for RDB storages the heartbeat and the retry of stale trials.
    """

    def wrapped(trial: Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, worker_id())
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:500])
            raise

    return wrapped


def study_name(prefix: str, identity: dict) -> str:
    """``<prefix>-<hash>`` of everything the trials' results depend on (``identity``, JSON-able),
    so re-running resumes the same study and any change of data, model or space starts a new
    one."""
    import hashlib
    import json

    blob = json.dumps(identity, sort_keys=True)
    return f"{prefix}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def open_study(name: str, storage: object, sampler: object, pruner: object) -> optuna.Study:
    """Create the study ``name`` in ``storage``, or load it to resume or join it."""
    return optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        sampler=sampler,
        pruner=pruner,
    )


PARENT_ATTR = "mlflow_parent_run_id"


def parent_run(study: optuna.Study, experiment_id: str, run_name: str, tags: dict):
    """Start, or re-open when resuming or joining, the study's parent MLflow run."""
    import mlflow
    from mlflow import MlflowClient

    run_id = study.user_attrs.get(PARENT_ATTR)
    if run_id:
        try:
            MlflowClient().get_run(run_id)
            return mlflow.start_run(run_id=run_id)
        except mlflow.exceptions.MlflowException:
            pass  # the study outlived its MLflow store: start a new parent
    active = mlflow.start_run(run_name=run_name, experiment_id=experiment_id, tags=tags)
    study.set_user_attr(PARENT_ATTR, active.info.run_id)
    return active
