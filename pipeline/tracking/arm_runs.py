"""Train an arm for one seed inside its own nested MLflow run and publish the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.tracking.links import describe
from pipeline.tracking.logger import run_logger
from pipeline.tracking.models import publish_model
from pipeline.tracking.runs import log_arm_run, log_unlabelled_inputs
from pipeline.transfer.arms import Arm, ModelFactory
from pipeline.transfer.fit import FitResult
from pipeline.transfer.source import SourceModel
from pipeline.transfer.train import TargetTask, train_arm


@dataclass
class ArmRunner:
    """Everything an arm's run shares with the other arms of a transfer stage.

    Attributes:
        task: Target data and label budget.
        factory: ``num_classes -> GroupedNet``.
        source: The source model.
        tracking_uri: MLflow store.
        experiment: MLflow experiment name.
        tags: Tags of every arm run (the stage's; its source tags are kept only on the arms that
            start from the source).
        data_path: The prepared target arrays (for the runs' dataset inputs).
        tune_run_id: The study the settings came from, if any.
        source_path: The prepared source arrays, when the runs read source data (transductive).
        fit_kwargs: Extra :func:`pipeline.transfer.train.train_arm` arguments (trainer, cache).
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
    source_path: Path | None = None

    def __post_init__(self) -> None:
        self._card = self.task.target.card()

    def __call__(
        self, arm: Arm, out: Path, path: Path, callbacks: Sequence = ()
    ) -> tuple[dict, list[dict]]:
        """Train ``arm`` (with extra Lightning ``callbacks``), save its weights at ``out/path``;
        return its index and history rows."""
        import mlflow

        name, seed, target = arm.name, arm.settings.seed, self.task.target
        tags = {k: v for k, v in self.tags.items() if not k.startswith("graftlab.source_")}
        with mlflow.start_run(run_name=f"{name}-seed{seed}", nested=True, tags=tags) as run:
            labelled = "target" in self.task.available()
            train_sha = log_arm_run(
                arm,
                dataset=target.name,
                labels_per_class=self.task.labels_per_class,
                labelled=self.task.labelled(seed) if labelled else None,
                validation=self.task.validation(seed) if labelled else None,
                data_path=self.data_path,
                source_ids=self.source.ids,
                tune_run_id=self.tune_run_id,
            )
            if self.task.source_data is not None and self.source_path is not None:
                source = self.task.source_data.card()
                log_unlabelled_inputs(self._card, self.data_path, source, self.source_path)
            logger = run_logger(self.tracking_uri, self.experiment, run.info.run_id, buffered=True)
            kwargs = dict(self.fit_kwargs)
            kwargs["callbacks"] = (*kwargs.get("callbacks", ()), *callbacks)
            result = train_arm(arm, self.task, self.factory, self.source, logger=logger, **kwargs)
            model_id = self._publish(arm, result, out / path, train_sha)
        row = {
            "arm": name,
            "seed": seed,
            "run_id": run.info.run_id,
            "model_id": model_id,
            "path": str(path),
            "best_val_acc": result.best_val_acc,
            "best_epoch": result.best_epoch,
            "seconds": result.seconds,
            "cached_prefix": result.cached_prefix,
            "init_groups": arm.init_groups,
            "freeze_groups": arm.settings.freeze_groups,
        }
        monitor = arm.settings.monitor
        if monitor != "val/acc":  # stopped by a validator, or at the last epoch
            best = result.history[result.best_epoch]
            row |= {"monitor": monitor or "last", "best_score": best.get(monitor or "", None)}
        history = [
            {
                "arm": name,
                "seed": seed,
                "epoch": h["epoch"],
                "val_acc": h["val/acc"],
                "seconds": h["seconds"],
                # unsupervised validators' scores (transductive runs)
                **{
                    "val_" + k[4:]: v
                    for k, v in h.items()
                    if k.startswith("val/") and k not in ("val/acc", "val/loss")
                },
            }
            for h in result.history
        ]
        return row, history

    def _publish(self, arm: Arm, result: FitResult, path: Path, train_sha: str | None) -> str:
        target = self.task.target
        spec = {
            **self.source.spec,
            "num_classes": target.num_classes,
            "classes": list(target.classes),
            "arm": arm.name,
            "seed": arm.settings.seed,
        }
        tags = {"graftlab.arm": arm.name, "graftlab.role": "target"}
        # lineage ids as model params too: the model page shows params, not tags, up front
        params = {
            "arm": arm.name,
            "seed": arm.settings.seed,
            "init_groups": arm.init_groups,
            "freeze_groups": arm.settings.freeze_groups,
            "labels_per_class": self.task.labels_per_class,
            "dataset": target.name,
        }
        if train_sha is not None:
            params["train_sha256"] = train_sha
        if arm.uses_source:
            tags["graftlab.source_model_id"] = self.source.ids["model_id"]
            params["source_model_id"] = self.source.ids["model_id"]
            params["source_run_id"] = self.source.ids["run_id"]
        if self.tune_run_id:
            params["tune_run_id"] = self.tune_run_id
        best = {"val_acc": result.best_val_acc, "best_epoch": result.best_epoch}
        name = f"{arm.name}-seed{arm.settings.seed}"
        return publish_model(name, result.model, path, spec, tags=tags, metrics=best, params=params)


def describe_transfer(
    experiment_id: str, arms: list[str], seeds: int, source_ids: dict, tune_run_id: str | None
) -> None:
    """Description of the transfer stage's parent run: what ran, and links to its inputs."""
    describe(
        experiment_id,
        f"Transfer arms {', '.join(arms)} x {seeds} paired seeds; each arm x seed is a nested "
        "run whose output is its trained model.",
        {
            "source model": ("model", source_ids.get("model_id")),
            "pretrain run": ("run", source_ids.get("run_id")),
            "tune run (settings)": ("run", tune_run_id),
            "prepare run (source data)": ("run", source_ids.get("prepare_run_id")),
        },
    )
