"""Run an Optuna study to a total trial budget, from any number of workers, resumably.

Each worker runs one trial at a time until the study holds ``n_trials`` finished (COMPLETE or
PRUNED) plus running trials, so N workers on one storage share the budget and trial numbers stay
unique (the storage assigns them). A trial that raises or returns NaN is told FAIL and the loop
goes on, up to ``max_failures``. Journal storages have no heartbeat, so a trial left RUNNING by a
killed worker on this machine (its pid is gone) is marked FAIL and its parameters re-queued: a
re-run resumes the study where it stopped.

A trial stopped by the machine rather than by its settings (out of memory, a storage that went
away: :func:`environment_failure`) or by an interrupt is marked FAIL and re-queued too, but it
does not count against ``max_failures``, and the worker stops with a named error: retrying on the
same broken machine would only burn the study's budget.
"""

from __future__ import annotations

import errno
import logging
import sys
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from pipeline import stops
from pipeline.errors import MachineError, StorageError, TrainingError
from pipeline.processes import Owner, current

log = logging.getLogger(__name__)
WORKER_ATTR, REAPED_ATTR = "worker", "reaped"
INTERRUPTED_ATTR, ENVIRONMENT_ATTR, SURPLUS_ATTR = "interrupted", "environment", "surplus"
# FAIL, but not because of the trial's settings
NOT_COUNTED = (REAPED_ATTR, INTERRUPTED_ATTR, ENVIRONMENT_ATTR, SURPLUS_ATTR)


class SurplusTrial(Exception):  # noqa: N818 (not an error: a trial the budget has no room for)
    """Workers that checked the budget at the same moment both started a trial; the one with
    the later number does not run (a FAIL that does not count), so the study ends with exactly
    ``n_trials``."""


class _QuietSurplus(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], SurplusTrial))


logging.getLogger("optuna.study._optimize").addFilter(_QuietSurplus())


def worker_id() -> str:
    """This worker: ``host:pid:start time`` (see :class:`pipeline.processes.Owner`)."""
    return current().token


def environment_failure(err: BaseException) -> bool:
    """Whether ``err`` says the machine failed (memory, disk, a store, the device), not the
    trial's settings."""
    if isinstance(err, MachineError | StorageError | MemoryError):
        return True
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
        return True
    torch, sqlalchemy = sys.modules.get("torch"), sys.modules.get("sqlalchemy")
    if torch is not None and isinstance(err, torch.OutOfMemoryError):
        return True
    if sqlalchemy is not None and isinstance(err, sqlalchemy.exc.OperationalError):
        return True  # the MLflow store (read-only, locked, gone)
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def _fail_and_requeue(study: optuna.Study, t: FrozenTrial, attr: str) -> None:
    study._storage.set_trial_user_attr(t._trial_id, attr, True)
    study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)


def reap_dead_trials(study: optuna.Study) -> int:
    """Fail and re-queue RUNNING trials whose worker process on this host no longer exists."""
    reaped = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get(WORKER_ATTR, "")
        owner = Owner.parse(worker)
        if owner is None or owner.alive() is not False:
            continue
        _fail_and_requeue(study, t, REAPED_ATTR)
        log.warning("trial %d: its worker %s died; marked FAIL and re-queued", t.number, worker)
        reaped += 1
    return reaped


def _abandon_own_trials(study: optuna.Study, attr: str) -> None:
    """Fail and re-queue this worker's RUNNING trials (Optuna leaves them RUNNING when a
    ``BaseException`` other than ``KeyboardInterrupt`` passes through it)."""
    me = worker_id()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get(WORKER_ATTR) == me:
            _fail_and_requeue(study, t, attr)


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's reaping of trials whose RDB heartbeat stopped (a no-op for a journal), without
    its ExperimentalWarning, which leaked onto a waiting worker's console."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def settle(study: optuna.Study, poll: float = 0.5) -> None:
    """Wait until no trial of ``study`` is RUNNING (other workers finish theirs; dead workers'
    trials are reaped), so what is read next is the study's final state."""
    told = False
    while running := study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reap_dead_trials(study)
        fail_stale_trials(study)
        if not told:
            log.info("waiting for %d running trial(s) of other workers", len(running))
            told = True
        time.sleep(poll)


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
        if not any(t.user_attrs.get(a) for a in NOT_COUNTED)
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
        MachineError: A trial failed because of the machine (:func:`environment_failure`).
        StorageError: The study's storage failed.
    """
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
        machine: list[BaseException] = []
        stops.raise_if_requested()  # a stop whose first raise was swallowed: no new trial
        try:
            study.optimize(
                _recorded(objective, machine, n_trials),
                n_trials=1,
                catch=(Exception,),
                gc_after_trial=False,
            )
        except (OSError, optuna.exceptions.StorageInternalError) as err:
            # not the objective's (Optuna catches those): the study storage's
            raise StorageError("tune.storage", f"the study storage failed ({err})") from err
        except BaseException:  # an interrupt: Optuna leaves the trial RUNNING
            _abandon_own_trials(study, INTERRUPTED_ATTR)
            raise
        if machine:
            raise MachineError(
                f"a trial failed because of the machine, not its settings ({machine[0]}); "
                "it is re-queued and does not count against tune.max_failures"
            )


def _surplus(trial: Trial, n_trials: int) -> bool:
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    taken = sorted(t.number for t in trial.study.get_trials(deepcopy=False, states=states))
    return len(taken) > n_trials and trial.number > taken[n_trials - 1]


def _recorded(
    objective: Callable[[Trial], float], machine: list[BaseException], n_trials: int
) -> Callable[[Trial], float]:
    """``objective`` that first tags the trial with its worker and records why it failed.

    ``study.optimize`` (one trial at a time) does the rest: PRUNED on ``TrialPruned``, FAIL on an
    exception or NaN, and for RDB storages the heartbeat and the retry of stale trials. A failure
    of the machine is marked (and re-queued) and appended to ``machine``.
    """

    def wrapped(trial: Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, worker_id())
        if _surplus(trial, n_trials):
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise SurplusTrial(f"trial {trial.number}: the budget of {n_trials} is taken")
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except Exception as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:500])
            if environment_failure(err):
                trial.set_user_attr(ENVIRONMENT_ATTR, True)
                trial.study.enqueue_trial(
                    trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False
                )
                machine.append(err)
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
            active = mlflow.start_run(run_id=run_id)
        except mlflow.exceptions.MlflowException:
            pass  # the study outlived its MLflow store: start a new parent
        else:
            from pipeline.tracking.owners import owner_tags

            mlflow.set_tags(owner_tags())  # this worker holds it RUNNING now
            return active
    active = mlflow.start_run(run_name=run_name, experiment_id=experiment_id, tags=tags)
    study.set_user_attr(PARENT_ATTR, active.info.run_id)
    return active
