"""Train arms (paired seeds as ensembles), each seed in its own nested MLflow run, and publish
the models."""

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
        tags: Tags of every arm run (the stage's; its source tags are kept only on the arms that
            start from the source).
        data_path: The prepared target arrays (for the runs' dataset inputs).
        tune_run_id: The study the settings came from, if any.
        source_path: The prepared source arrays, when the runs read source data (transductive).
        fit_kwargs: Extra :func:`pipeline.transfer.train.train_arms` arguments (trainer, cache,
            vectorise).
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
        """Train ``arm`` alone (with extra Lightning ``callbacks``), save its weights at
        ``out/path``; return its index and history rows."""
        return self.many([arm], out, [path], callbacks)[0]

    def many(
        self, arms: Sequence[Arm], out: Path, paths: Sequence[Path], callbacks: Sequence = ()
    ) -> list[tuple[dict, list[dict]]]:
        """Train ``arms`` (as ensembles where they can: :func:`~pipeline.transfer.train.
        train_arms`; ``callbacks`` go to the first training loop), each in its own nested MLflow
        run under the active run, and save each one's weights at ``out/path``; return each
        one's index and history rows.

        The runs exist (RUNNING) while the ensemble trains, each receiving its own epoch metrics;
        params, inputs and the model are logged once it is trained. On an error every run still
        open ends FAILED (KILLED on an interrupt).
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
            kwargs = dict(self.fit_kwargs)
            kwargs["callbacks"] = (*kwargs.get("callbacks", ()), *callbacks)
            results = train_arms(
                arms, self.task, self.factory, self.source, loggers=loggers, **kwargs
            )
            done = []
            for arm, run_id, result, path in zip(arms, runs, results, paths, strict=True):
                with mlflow.start_run(run_id=run_id, nested=True):
                    train_sha = self._log(arm)
                    model_id = self._publish(arm, result, out / path, train_sha)
                done.append((self._row(arm, run_id, model_id, path, result), _history(arm, result)))
        except BaseException as err:
            status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
            for run_id in runs:
                if client.get_run(run_id).info.status == "RUNNING":
                    client.set_terminated(run_id, status)
            raise
        return done

    def _open(self, client: object, arm: Arm) -> str:
        """A RUNNING run ``<arm>-seed<s>`` nested under the active run, tagged as
        ``mlflow.start_run`` would tag it, without making it the active run."""
        import mlflow
        from mlflow.tracking.context import registry
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        parent = mlflow.active_run()
        tags = {k: v for k, v in self.tags.items() if not k.startswith("graftlab.source_")}
        tags = registry.resolve_tags({**tags, MLFLOW_PARENT_RUN_ID: parent.info.run_id})
        name = f"{arm.name}-seed{arm.settings.seed}"
        return client.create_run(parent.info.experiment_id, run_name=name, tags=tags).info.run_id

    def _log(self, arm: Arm) -> str | None:
        """Params, tags and inputs of the active run, which trained ``arm``; the labelled
        subset's sha256 (None without target labels)."""
        seed, target = arm.settings.seed, self.task.target
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
        return train_sha

    @staticmethod
    def _row(arm: Arm, run_id: str, model_id: str, path: Path, result: FitResult) -> dict:
        row = {
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
        monitor = arm.settings.monitor
        if monitor != "val/acc":  # stopped by a validator, or at the last epoch
            best = result.history[result.best_epoch]
            row |= {"monitor": monitor or "last", "best_score": best.get(monitor or "", None)}
        return row

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


def _history(arm: Arm, result: FitResult) -> list[dict]:
    """``history.csv`` rows of one run: per epoch its validation accuracy and wall time share,
    and the unsupervised validators' scores (transductive runs)."""
    return [
        {
            "arm": arm.name,
            "seed": arm.settings.seed,
            "epoch": h["epoch"],
            "val_acc": h["val/acc"],
            "seconds": h["seconds"],
            **{
                "val_" + k[4:]: v
                for k, v in h.items()
                if k.startswith("val/") and k not in ("val/acc", "val/loss")
            },
        }
        for h in result.history
    ]


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
