"""What every training run records: its arm, settings, data and where it started from."""

from __future__ import annotations

from pathlib import Path

from pipeline.data.domain import Split
from pipeline.errors import StorageError
from pipeline.tracking.datasets import SplitDataset, log_split
from pipeline.tracking.lineage import flatten
from pipeline.tracking.links import describe
from pipeline.transfer.arms import Arm


def require_run(run_id: str, stage: str, uri: str, named_in: Path) -> None:
    """Check that the store at ``uri`` holds the run ``run_id`` that ``stage`` recorded in
    ``named_in``, before a later stage logs against it (its models' metrics, its links).

    Raises:
        StorageError: It does not: ``stage`` ran against another store (``MLFLOW_TRACKING_URI``
            changed in between), where MLflow itself failed with a foreign-key traceback.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_run(run_id)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        problem = (
            f"holds no run {run_id}, the {stage} run {named_in} names: {stage} ran against "
            f"another store; set MLFLOW_TRACKING_URI to that store, or run {stage} again here "
            f"(dvc repro -f -s {stage})"
        )
        raise StorageError(uri, problem) from None


def log_arm_run(
    arm: Arm,
    *,
    dataset: str,
    labels_per_class: int,
    labelled: Split | None,
    validation: Split | None,
    data_path: Path,
    source_ids: dict,
    tune_run_id: str | None = None,
) -> str | None:
    """Tags, params, description and dataset inputs of the active run, which trains ``arm`` for
    one seed; return the labelled subset's sha256 (None without target labels).

    A no-source arm (scratch) carries no source tags, input or links: nothing of the source
    model reaches it.

    Args:
        arm: The arm (its settings carry the seed).
        dataset: Target dataset name.
        labels_per_class: The label budget.
        labelled: The labelled training subset the seed drew (None: no target labels).
        validation: The labelled validation subset the seed drew (None when
            :func:`log_unlabelled_inputs` logs what the run validates on).
        data_path: The prepared target arrays.
        source_ids: The source model's MLflow ids (``run_id``, ``model_id``).
        tune_run_id: The study run the settings came from, if any.
    """
    import mlflow
    from mlflow.entities import LoggedModelInput

    seed = arm.settings.seed
    tags = {"graftlab.arm": arm.name, "graftlab.seed": str(seed), "graftlab.role": "target"}
    experiment_id = mlflow.active_run().info.experiment_id
    links: dict[str, tuple[str, str | None]] = {}
    if arm.uses_source:
        tags |= {
            "graftlab.source_run_id": source_ids["run_id"],
            "graftlab.source_model_id": source_ids["model_id"],
        }
        mlflow.log_input(model=LoggedModelInput(source_ids["model_id"]))
        links = {
            "source model": ("model", source_ids["model_id"]),
            "pretrain run": ("run", source_ids["run_id"]),
        }
    if tune_run_id:
        tags["graftlab.tune_run_id"] = tune_run_id
        links["tune run (settings)"] = ("run", tune_run_id)
    mlflow.set_tags(tags)
    params = {"arm": arm.name, "init_groups": arm.init_groups, "labels_per_class": labels_per_class}
    mlflow.log_params(flatten({**params, **arm.settings.as_dict()}))
    sha = None
    if labelled is not None:
        split = f"train[{labels_per_class}/class, seed {seed}]"
        sha = labelled.sha256()
        log_split(dataset, split, sha, data_path, "training", len(labelled))
    if validation is not None:
        val = f"val[{len(validation)} images, seed {seed}]"
        log_split(dataset, val, validation.sha256(), data_path, "validation", len(validation))
    start = "the source model's first" if arm.uses_source else "no source groups: random init of"
    data = (
        f"{labels_per_class} labelled {dataset} images per class"
        if labelled is not None
        else f"labelled source and unlabelled {dataset} images"
    )
    describe(
        experiment_id,
        f"Arm **{arm.name}**, seed {seed}: {start} {arm.init_groups or 'all'} layer groups, "
        f"{arm.settings.freeze_groups} frozen, trained on {data}. "
        "The trained model is this run's output.",
        links,
    )
    return sha


def log_unlabelled_inputs(target: dict, target_path: Path, source: dict, source_path: Path) -> None:
    """Dataset inputs of a transductive run: the target's train and val inputs marked unlabelled
    (input tag ``labelled: false``; their digests cover the inputs only), the labelled source
    train and val splits.

    Args:
        target: Data card of the target as the run saw it (labels removed).
        target_path: The prepared target arrays.
        source: Data card of the source.
        source_path: The prepared source arrays.
    """
    unlabelled = {"labelled": "false"}
    for split, context in (("train", "training"), ("val", "validation")):
        info = target["splits"][split]
        name = f"{split}[unlabelled]"
        log_split(
            target["name"], name, info["sha256"], target_path, context, info["size"], unlabelled
        )
        info = source["splits"][split]
        log_split(source["name"], split, info["sha256"], source_path, context, info["size"])


def log_curves(freeze_depth: list | None, label_efficiency: list | None) -> None:
    """Mean accuracies of the curves as step-indexed metrics of the active run (step = k, or
    labels per class)."""
    import mlflow

    from pipeline.transfer.curves import mean

    for r in freeze_depth or []:
        mlflow.log_metrics(
            {
                "curve.freeze_depth.freeze": mean(r.freeze),
                "curve.freeze_depth.anb": mean(r.anb),
                "curve.freeze_depth.anb_plus": mean(r.anb_plus),
            },
            step=r.k,
        )
    for r in label_efficiency or []:
        mlflow.log_metrics(
            {"curve.labels.transfer": mean(r.transfer), "curve.labels.scratch": mean(r.scratch)},
            step=r.labels_per_class,
        )


def log_scored(scored: list, test: SplitDataset, tags: dict[str, str]) -> None:
    """Each scored model as a model input of the active (evaluate) run, and one nested run per
    model that scored it on ``test``: ``test_acc`` and ``test_macro_f1`` on that run and on the
    model, under the same names for every model (the UI's models table sorts by them).

    One run per model, as ``mlflow.evaluate`` does: the evaluate run keeps only its summary
    metrics instead of fifteen values of one ``test_acc``.
    """
    import mlflow
    from mlflow.entities import LoggedModelInput

    from pipeline.tracking.models import log_model_metrics

    parent = mlflow.active_run().info
    for r in scored:
        mlflow.log_input(model=LoggedModelInput(r.model_id))
    for r in scored:
        with mlflow.start_run(
            run_name=f"score {r.arm}-seed{r.seed}",
            nested=True,
            tags={
                **{k: v for k, v in tags.items() if r.init_groups or "source_" not in k},
                "graftlab.arm": r.arm,
                "graftlab.seed": str(r.seed),
            },
        ):
            mlflow.log_input(model=LoggedModelInput(r.model_id))
            mlflow.log_input(test, context="evaluation", tags={"sha256": test.profile["sha256"]})
            metrics = {"test_acc": r.acc, "test_macro_f1": r.macro_f1}
            log_model_metrics(r.model_id, metrics, dataset=(test.name, test.digest))
            describe(
                parent.experiment_id,
                f"Test score of **{r.arm}**, seed {r.seed}, on {test.name}.",
                {
                    "model": ("model", r.model_id),
                    "run that trained it": ("run", r.run_id),
                    "evaluate run": ("run", parent.run_id),
                },
            )
