"""What every training run records: its arm, settings, data and where it started from."""

from __future__ import annotations

from pathlib import Path

from pipeline.data.domain import Split
from pipeline.tracking.datasets import log_split
from pipeline.tracking.lineage import flatten
from pipeline.transfer.arms import Arm


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
) -> None:
    """Tags, params and dataset inputs of the active run, which trains ``arm`` for one seed.

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
    if arm.uses_source:
        tags |= {
            "graftlab.source_run_id": source_ids["run_id"],
            "graftlab.source_model_id": source_ids["model_id"],
        }
        mlflow.log_input(model=LoggedModelInput(source_ids["model_id"]))
    if tune_run_id:
        tags["graftlab.tune_run_id"] = tune_run_id
    mlflow.set_tags(tags)
    params = {"arm": arm.name, "init_groups": arm.init_groups, "labels_per_class": labels_per_class}
    mlflow.log_params(flatten({**params, **arm.settings.as_dict()}))
    if labelled is not None:
        split = f"train[{labels_per_class}/class, seed {seed}]"
        log_split(dataset, split, labelled.sha256(), data_path, "training", len(labelled))
    if validation is not None:
        val = f"val[{len(validation)} images, seed {seed}]"
        log_split(dataset, val, validation.sha256(), data_path, "validation", len(validation))


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


def log_scored(scored: list) -> None:
    """Each scored model as a model input of the active run, its test metrics logged on it."""
    import mlflow
    from mlflow.entities import LoggedModelInput

    for r in scored:
        mlflow.log_input(model=LoggedModelInput(r.model_id))
        prefix = f"{r.arm}.seed{r.seed}"
        mlflow.log_metrics(
            {f"{prefix}.test_acc": r.acc, f"{prefix}.test_macro_f1": r.macro_f1},
            model_id=r.model_id,
        )
