"""The study's objective: train the primary arm with a trial's settings, one MLflow run each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pipeline.transfer.arms import Arm
from pipeline.transfer.fit import FitResult
from pipeline.tuning.space import Param

TrainFn = Callable[..., list[FitResult]]  # train(arms, logger=..., callbacks=...) -> results


def trial_objective(
    params: list[Param],
    arm_for: Callable[[dict], Arm | Sequence[Arm]],
    train: TrainFn,
    logger_for: Callable[[str], Any],
    run_tags: dict[str, str],
) -> Callable[[Any], float]:
    """An Optuna objective: suggest ``params``, train ``arm_for(values)``, return best val acc.

    ``arm_for`` may give several arms (say, the trial's settings on several paired label
    subsets): they train together, as one vectorised ensemble when they can, pruning sees their
    mean validation accuracy per epoch and the objective is the mean of their best ones.

    Each trial is a nested MLflow run (its id is the trial's ``mlflow_run_id`` user attribute)
    holding the trial's params, per-epoch metrics, result and Optuna state, written through one
    buffered logger: a trial costs one MLflow write besides starting and ending its run. Trials
    are pruned per epoch on validation accuracy.

    Args:
        params: The search space.
        arm_for: The primary arm with a trial's values applied (``{config key: value}``), or
            several (one per seed).
        train: Trains a list of arms with a Lightning logger and callbacks
            (:func:`pipeline.transfer.train.train_arms`).
        logger_for: ``logger_for(run_id)``: a buffered Lightning logger writing into that run.
        run_tags: Tags of every trial run.
    """
    import mlflow
    from optuna_integration import PyTorchLightningPruningCallback

    def objective(trial: Any) -> float:
        values = {p.key: p.suggest(trial) for p in params}
        arms = arm_for(values)
        arms = [arms] if isinstance(arms, Arm) else list(arms)
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
            pruning = PyTorchLightningPruningCallback(trial, monitor="val/acc")
            results = train(arms, logger=logger, callbacks=(pruning,))
            value = sum(r.best_val_acc for r in results) / len(results)
            logger.log_metrics(
                {
                    "best/val_acc": value,
                    "best/epoch": sum(r.best_epoch for r in results) / len(results),
                    "seconds": sum(r.seconds for r in results),
                }
            )
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
