"""The study's objective: train the primary arm with a trial's settings, one MLflow run each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pipeline.transfer.arms import Arm
from pipeline.transfer.fit import FitResult
from pipeline.tuning.space import Param

TrainFn = Callable[..., list[FitResult]]  # train(arms, logger=..., callbacks=...) -> results


def trial_objective(
    params: list[Param],
    arm_for: Callable[[dict, int], Arm],
    seeds: Sequence[int],
    train: TrainFn,
    logger_for: Callable[[str], Any],
    run_tags: dict[str, str],
    monitor: str = "val/acc",
) -> Callable[[Any], float]:
    """An Optuna objective: suggest ``params``, train ``arm_for(values, seed)`` for every seed,
    return the mean of ``monitor`` (validation accuracy, or an unsupervised validator's score)
    at the epoch each fit kept.

    Each seed draws its own labelled training and validation subset, so the study scores a
    setting on several paired label draws rather than on one lucky or unlucky draw. Scored on
    ``val/acc``, the seeds train together as one vectorised ensemble; scored by a validator (which
    scores one network per fit), one by one. Either way the first seed's per-epoch metrics go to
    the pruner and the trial's run, as without ensembles. When it is pruned, the
    trial is. Each trial is a nested MLflow run (its id is the trial's ``mlflow_run_id`` user
    attribute) holding the trial's params, the per-epoch metrics, every seed's result, the mean
    and the Optuna state, written through one buffered logger: a trial costs one MLflow write
    besides starting and ending its run.

    Args:
        params: The search space.
        arm_for: The primary arm with a trial's values applied (``{config key: value}``) for a
            seed.
        seeds: The paired seeds (label subsets) every trial trains on.
        train: Trains arms, as ensembles where it can, the logger and callbacks going to the
            first training loop: ``train(arms, logger=..., callbacks=...)`` (see
            :func:`pipeline.transfer.train.train_arms`).
        logger_for: ``logger_for(run_id)``: a buffered Lightning logger writing into that run.
        run_tags: Tags of every trial run.
        monitor: The logged metric a trial is scored and pruned on (``val/acc``, ``val/im``...):
            its value at the epoch the fit kept.
    """
    import mlflow
    from optuna_integration import PyTorchLightningPruningCallback

    from pipeline.tracking.links import DESCRIPTION_TAG, description
    from pipeline.tuning.display import settings_text

    def objective(trial: Any) -> float:
        values = {p.key: p.suggest(trial) for p in params}
        parent = mlflow.active_run()
        text = (
            f"Trial {trial.number} of Optuna study {run_tags.get('optuna.study')}: "
            + settings_text(values)
            + f"; scored on {monitor} at each fit's kept epoch, the mean over seeds {list(seeds)}"
        )
        links = {
            "study run": ("run", parent.info.run_id if parent else None),
            "source model": ("model", run_tags.get("graftlab.source_model_id")),
        }
        experiment = parent.info.experiment_id if parent else ""
        child = mlflow.start_run(
            run_name=f"trial-{trial.number}",
            nested=True,
            tags={
                **run_tags,
                "optuna.trial": str(trial.number),
                DESCRIPTION_TAG: description(experiment, text, links),  # no extra write
            },
        )
        trial.set_user_attr("mlflow_run_id", child.info.run_id)
        logger = logger_for(child.info.run_id)
        logger.log_hyperparams({"trial": trial.number, "seeds": list(seeds), **values})
        status, state = "FAILED", "FAIL"
        try:
            scores = []
            name = monitor.replace("/", "_")  # best/val_acc, best/val_im, ...
            pruning = (PyTorchLightningPruningCallback(trial, monitor=monitor),)
            arms = [arm_for(values, seed) for seed in seeds]
            if monitor == "val/acc":
                results = train(arms, logger=logger, callbacks=pruning)
            else:  # validators score one network per fit: the first seed reports
                results = [train([arms[0]], logger=logger, callbacks=pruning)[0]]
                results += [train([arm])[0] for arm in arms[1:]]
            for seed, result in zip(seeds, results, strict=True):
                scores.append(float(result.history[result.best_epoch][monitor]))
                logger.log_metrics({f"best/{name}.seed{seed}": scores[-1]})
            value = float(np.mean(scores))
            logger.log_metrics({f"best/{name}": value})
            status, state = "FINISHED", "COMPLETE"
            return value
        except BaseException as err:
            if type(err).__name__ == "TrialPruned":
                status, state = "FINISHED", "PRUNED"  # a normal end, told apart by the tag
            raise
        finally:
            logger.set_tags({"optuna.state": state})
            logger.flush()
            mlflow.end_run(status)

    return objective
