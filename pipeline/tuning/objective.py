"""The study's objective: train the primary arm with a trial's settings, one MLflow run each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.transfer.arms import Arm
from pipeline.transfer.fit import FitResult
from pipeline.tuning.space import Param

TrainFn = Callable[..., FitResult]  # train(arm, logger=..., callbacks=...) -> result


def trial_objective(
    params: list[Param],
    arm_for: Callable[[dict], Arm],
    train: TrainFn,
    logger_for: Callable[[str], Any],
    run_tags: dict[str, str],
    monitor: str = "val/acc",
) -> Callable[[Any], float]:
    """An Optuna objective: suggest ``params``, train ``arm_for(values)``, return the best
    ``monitor`` value (validation accuracy, or an unsupervised validator's score).

    Each trial is a nested MLflow run (its id is the trial's ``mlflow_run_id`` user attribute)
    holding the trial's params, per-epoch metrics, result and Optuna state, written through one
    buffered logger: a trial costs one MLflow write besides starting and ending its run. Trials
    are pruned per epoch on ``monitor``.

    Args:
        params: The search space.
        arm_for: The primary arm with a trial's values applied (``{config key: value}``).
        train: Trains an arm with a Lightning logger and callbacks.
        logger_for: ``logger_for(run_id)``: a buffered Lightning logger writing into that run.
        run_tags: Tags of every trial run.
        monitor: The logged metric a trial is scored and pruned on (``val/acc``, ``val/im``...):
            its value at the epoch the fit kept.
    """
    import mlflow
    from optuna_integration import PyTorchLightningPruningCallback

    def objective(trial: Any) -> float:
        values = {p.key: p.suggest(trial) for p in params}
        arm = arm_for(values)
        child = mlflow.start_run(
            run_name=f"trial-{trial.number}",
            nested=True,
            tags={**run_tags, "optuna.trial": str(trial.number)},
        )
        trial.set_user_attr("mlflow_run_id", child.info.run_id)
        logger = logger_for(child.info.run_id)
        logger.log_hyperparams({"trial": trial.number, **values})
        status, state = "FAILED", "FAIL"
        try:
            pruning = PyTorchLightningPruningCallback(trial, monitor=monitor)
            result = train(arm, logger=logger, callbacks=(pruning,))
            value = float(result.history[result.best_epoch][monitor])
            best = {"best/val_acc": result.best_val_acc, "best/epoch": result.best_epoch}
            if monitor != "val/acc":
                best[f"best/{monitor.removeprefix('val/')}"] = value
            logger.log_metrics({**best, "seconds": result.seconds})
            status, state = "FINISHED", "COMPLETE"
            return value
        except BaseException as err:
            if type(err).__name__ == "TrialPruned":
                status, state = "KILLED", "PRUNED"
            raise
        finally:
            logger.set_tags({"optuna.state": state})
            logger.flush()
            mlflow.end_run(status)

    return objective
