"""The study's objective: train the primary arm with a trial's settings, one MLflow run each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.transfer.arms import Arm
from pipeline.transfer.fit import FitResult
from pipeline.tuning.space import Param

TrainFn = Callable[..., FitResult]  # train(arm, logger=..., callbacks=...) -> result


def trial_objective(
    params: list[Param],
    arm_for: Callable[[dict, int], Arm],
    seeds: Sequence[int],
    train: TrainFn,
    logger_for: Callable[[str], Any],
    run_tags: dict[str, str],
) -> Callable[[Any], float]:
    """An Optuna objective: suggest ``params``, train ``arm_for(values, seed)`` for every seed,
    return the mean best validation accuracy.

    Each seed draws its own labelled training and validation subset, so the study scores a
    setting on several paired label draws rather than on one lucky or unlucky draw. The first
    seed's run reports per-epoch validation accuracy to the pruner; when it is pruned, the trial
    is. Each trial is a nested MLflow run (its id is the trial's ``mlflow_run_id`` user attribute)
    holding the trial's params, the first seed's per-epoch metrics, every seed's best validation
    accuracy, the mean and the Optuna state, written through one buffered logger: a trial costs
    one MLflow write besides starting and ending its run.

    Args:
        params: The search space.
        arm_for: The primary arm with a trial's values applied (``{config key: value}``) for a
            seed.
        seeds: The paired seeds (label subsets) every trial trains on.
        train: Trains an arm: ``train(arm, logger=..., callbacks=...)``.
        logger_for: ``logger_for(run_id)``: a buffered Lightning logger writing into that run.
        run_tags: Tags of every trial run.
    """
    import mlflow
    from optuna_integration import PyTorchLightningPruningCallback

    def objective(trial: Any) -> float:
        values = {p.key: p.suggest(trial) for p in params}
        child = mlflow.start_run(
            run_name=f"trial-{trial.number}",
            nested=True,
            tags={**run_tags, "optuna.trial": str(trial.number)},
        )
        trial.set_user_attr("mlflow_run_id", child.info.run_id)
        logger = logger_for(child.info.run_id)
        logger.log_hyperparams({"trial": trial.number, "seeds": list(seeds), **values})
        status, state = "FAILED", "FAIL"
        try:
            best = []
            for i, seed in enumerate(seeds):
                pruning = (PyTorchLightningPruningCallback(trial, monitor="val/acc"),)
                result = train(
                    arm_for(values, seed),
                    logger=logger if i == 0 else False,
                    callbacks=pruning if i == 0 else (),
                )
                best.append(result.best_val_acc)
                logger.log_metrics({f"best/val_acc.seed{seed}": result.best_val_acc})
            value = float(np.mean(best))
            logger.log_metrics({"best/val_acc": value})
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
