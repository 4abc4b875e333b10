"""Train arms (paired seeds as ensembles), each seed in its own nested MLflow run, and publish
the models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.tracking.logger import run_logger
from pipeline.tracking.models import publish_model
from pipeline.tracking.runs import log_arm_run
from pipeline.transfer.arms import Arm, ModelFactory
from pipeline.transfer.fit import FitResult
from pipeline.transfer.source import SourceModel
from pipeline.transfer.train import TargetTask, train_arms


@dataclass
class ArmRunner:
    """Everything an arm's run shares with the other arms of a transfer stage.

    Attributes:
        task: Target data and label budget.
        factory: ``num_classes -> GroupedNet``.
        source: The source model.
        tracking_uri: MLflow store.
        experiment: MLflow experiment name.
        tags: Tags of every arm run.
        data_path: The prepared target arrays (for the runs' dataset inputs).
        tune_run_id: The study the settings came from, if any.
        fit_kwargs: Extra :func:`pipeline.transfer.train.train_arms` arguments (trainer, cache).
    """

    task: TargetTask
    factory: ModelFactory
    source: SourceModel
    tracking_uri: str
    experiment: str
    tags: dict[str, str]
    data_path: Path
    tune_run_id: str | None = None
    fit_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._val = self.task.target.card()["splits"]["val"]

    def __call__(
        self, arms: Sequence[Arm], out: Path, paths: Sequence[Path]
    ) -> tuple[list[dict], list[dict]]:
        """Train ``arms`` (as ensembles where they can, see
        :func:`pipeline.transfer.train.train_arms`), each in its own nested MLflow run under the
        active run, and save each one's weights at ``out/path``; return their index and history
        rows.

        The runs exist (RUNNING) while the ensemble trains, each receiving its own epoch metrics;
        params, inputs and the model are logged once it is trained. On an error every run that is
        still open ends FAILED (KILLED on an interrupt).
        """
        import mlflow
        from mlflow import MlflowClient

        client = MlflowClient()
        runs = [self._open(client, arm) for arm in arms]
        try:
            loggers = [
                run_logger(self.tracking_uri, self.experiment, run_id, buffered=True)
                for run_id in runs
            ]
            results = train_arms(
                arms, self.task, self.factory, self.source, loggers=loggers, **self.fit_kwargs
            )
            rows, history = [], []
            for arm, run_id, result, path in zip(arms, runs, results, paths, strict=True):
                with mlflow.start_run(run_id=run_id, nested=True):
                    self._log(arm)
                    model_id = self._publish(arm, result, out / path)
                rows.append(self._row(arm, run_id, model_id, path, result))
                history += [
                    {
                        "arm": arm.name,
                        "seed": arm.settings.seed,
                        "epoch": h["epoch"],
                        "val_acc": h["val/acc"],
                        "seconds": h["seconds"],
                    }
                    for h in result.history
                ]
        except BaseException as err:
            status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
            for run_id in runs:
                if client.get_run(run_id).info.status == "RUNNING":
                    client.set_terminated(run_id, status)
            raise
        return rows, history

    def _open(self, client: object, arm: Arm) -> str:
        """A RUNNING run ``<arm>-seed<s>`` nested under the active run, as ``mlflow.start_run``
        would start it (same tags), without making it the active run."""
        import mlflow
        from mlflow.tracking.context import registry
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        parent = mlflow.active_run()
        tags = registry.resolve_tags({**self.tags, MLFLOW_PARENT_RUN_ID: parent.info.run_id})
        run = client.create_run(
            parent.info.experiment_id,
            run_name=f"{arm.name}-seed{arm.settings.seed}",
            tags=tags,
        )
        return run.info.run_id

    def _log(self, arm: Arm) -> None:
        log_arm_run(
            arm,
            dataset=self.task.target.name,
            labels_per_class=self.task.labels_per_class,
            labelled=self.task.labelled(arm.settings.seed),
            val=self._val,
            data_path=self.data_path,
            source_ids=self.source.ids,
            tune_run_id=self.tune_run_id,
        )

    @staticmethod
    def _row(arm: Arm, run_id: str, model_id: str, path: Path, result: FitResult) -> dict:
        return {
            "arm": arm.name,
            "seed": arm.settings.seed,
            "run_id": run_id,
            "model_id": model_id,
            "path": str(path),
            "best_val_acc": result.best_val_acc,
            "best_epoch": result.best_epoch,
            "seconds": result.seconds,
            "cached_prefix": result.cached_prefix,
            "init_groups": arm.init_groups,
            "freeze_groups": arm.settings.freeze_groups,
        }

    def _publish(self, arm: Arm, result: FitResult, path: Path) -> str:
        target = self.task.target
        spec = {
            **self.source.spec,
            "num_classes": target.num_classes,
            "classes": list(target.classes),
            "arm": arm.name,
            "seed": arm.settings.seed,
        }
        tags = {"graftlab.arm": arm.name, "graftlab.role": "target"}
        if arm.uses_source:
            tags["graftlab.source_model_id"] = self.source.ids["model_id"]
        best = {"best/val_acc": result.best_val_acc, "best/epoch": result.best_epoch}
        name = f"{arm.name}-seed{arm.settings.seed}"
        return publish_model(name, result.model, path, spec, tags=tags, metrics=best)
