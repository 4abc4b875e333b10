"""transfer: train every arm (scratch, linear probe, freeze-k, fine-tune, L2-SP) on the target.

Reads params: seed, data.labels_per_class, model, transfer, trainer;
outputs/prepare/target, outputs/pretrain/model, outputs/tune/best.yaml (its overrides replace
the shared transfer settings when tuning is on).
Writes outputs/transfer/models/ (<arm>/seed<s>.safetensors and index.json with the MLflow run
and LoggedModel of each), outputs/transfer/metrics.json (validation accuracy per arm) and
outputs/transfer/history.csv (per-epoch validation accuracy of every run).
Seeds are paired: seed s gives every arm the same labelled subset and the same random init.
"""

from __future__ import annotations

import csv
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import LoggedModelInput
from omegaconf import DictConfig, OmegaConf

from pipeline.data.domain import Domain
from pipeline.data.splits import label_budget
from pipeline.data.store import load_domain
from pipeline.models.weights import save_weights
from pipeline.tracking.datasets import log_split
from pipeline.tracking.lineage import flatten, stage_tags
from pipeline.tracking.logger import run_logger
from pipeline.tracking.models import log_weights_model
from pipeline.transfer.arms import Arm
from pipeline.transfer.prefix_cache import PrefixCache
from stages import _build as build
from stages._shell import OUTPUTS, run_stage, stage_output, use_tracking, write_json
from stages._target import Source, train_arm, tuned_config

STAGE = "transfer"


def _log_arm_run(
    arm: Arm, source: Source, target: Domain, card: dict, labels: int, tune_run_id: str | None
) -> None:
    tags = {
        "graftlab.arm": arm.name,
        "graftlab.seed": str(arm.settings.seed),
        "graftlab.role": "target",
    }
    if arm.uses_source:
        tags |= {
            "graftlab.source_run_id": source.ids["run_id"],
            "graftlab.source_model_id": source.ids["model_id"],
        }
        mlflow.log_input(model=LoggedModelInput(source.ids["model_id"]))
    if tune_run_id:
        tags["graftlab.tune_run_id"] = tune_run_id
    mlflow.set_tags(tags)
    mlflow.log_params(
        flatten(
            {
                "arm": arm.name,
                "init_groups": arm.init_groups,
                "labels_per_class": labels,
                **arm.settings.as_dict(),
            }
        )
    )
    index = label_budget(target.splits["train"].y, labels, arm.settings.seed)
    subset = target.splits["train"].subset(index)
    path = OUTPUTS / "prepare" / "target" / "arrays.safetensors"
    log_split(
        target.name,
        f"train[{labels}/class, seed {arm.settings.seed}]",
        subset.sha256(),
        path,
        "training",
        len(subset),
    )
    log_split(
        target.name,
        "val",
        card["splits"]["val"]["sha256"],
        path,
        "validation",
        card["splits"]["val"]["size"],
    )


def run(cfg: DictConfig) -> dict:
    target = load_domain(OUTPUTS / "prepare" / "target")
    source = Source(OUTPUTS / "pretrain" / "model")
    cfg, best = tuned_config(cfg)
    names = build.arm_names(cfg)
    groups = build.num_groups(build.model_factory(cfg))
    labels = cfg.data.labels_per_class
    seeds = build.transfer_seeds(cfg)
    arms = {(n, s): build.arm(cfg, n, groups, s) for s in seeds for n in names}
    label_budget(target.splits["train"].y, labels, seeds[0])  # validates the budget up front
    uri, experiment_id = use_tracking(cfg)
    card = target.card()
    cache = PrefixCache()
    rows, history = [], []
    tags = {
        **stage_tags(STAGE, "."),
        "graftlab.source_run_id": source.ids["run_id"],
        "graftlab.source_model_id": source.ids["model_id"],
    }
    with (
        mlflow.start_run(run_name=STAGE, experiment_id=experiment_id, tags=tags) as parent,
        stage_output(STAGE) as out,
    ):
        mlflow.log_params(
            flatten(
                {
                    "transfer": OmegaConf.to_container(cfg.transfer, resolve=True),
                    "labels_per_class": labels,
                }
            )
        )
        mlflow.log_text(OmegaConf.to_yaml(cfg), "config.yaml")
        mlflow.log_input(model=LoggedModelInput(source.ids["model_id"]))
        for (name, seed), arm in arms.items():
            with mlflow.start_run(run_name=f"{name}-seed{seed}", nested=True, tags=tags) as child:
                _log_arm_run(arm, source, target, card, labels, best.get("tune_run_id"))
                result = train_arm(
                    cfg,
                    arm,
                    target,
                    source,
                    labels,
                    cache=cache,
                    logger=run_logger(
                        uri, cfg.tracking.experiment, child.info.run_id, buffered=True
                    ),
                )
                path = out / "models" / name / f"seed{seed}.safetensors"
                path.parent.mkdir(parents=True, exist_ok=True)
                spec = {
                    **source.spec,
                    "num_classes": target.num_classes,
                    "classes": list(target.classes),
                    "arm": name,
                    "seed": seed,
                }
                save_weights(result.model, path, metadata=spec)
                model_tags = {"graftlab.arm": name, "graftlab.role": "target"}
                if arm.uses_source:
                    model_tags["graftlab.source_model_id"] = source.ids["model_id"]
                model_id = log_weights_model(
                    f"{name}-seed{seed}", result.model, spec, tags=model_tags
                )
                mlflow.log_metrics(
                    {"best/val_acc": result.best_val_acc, "best/epoch": result.best_epoch},
                    model_id=model_id,
                )
            rows.append(
                {
                    "arm": name,
                    "seed": seed,
                    "run_id": child.info.run_id,
                    "model_id": model_id,
                    "path": str(path.relative_to(out)),
                    "best_val_acc": result.best_val_acc,
                    "best_epoch": result.best_epoch,
                    "seconds": result.seconds,
                    "cached_prefix": result.cached_prefix,
                    "init_groups": arm.init_groups,
                    "freeze_groups": arm.settings.freeze_groups,
                }
            )
            history += [
                {
                    "arm": name,
                    "seed": seed,
                    "epoch": h["epoch"],
                    "val_acc": h["val/acc"],
                    "seconds": h["seconds"],
                }
                for h in result.history
            ]
        metrics = {
            name: {"val_acc": float(np.mean([r["best_val_acc"] for r in rows if r["arm"] == name]))}
            for name in names
        }
        metrics["labels_per_class"] = labels
        metrics["seeds"] = len(seeds)
        write_json(
            out / "models" / "index.json",
            {
                "run_id": parent.info.run_id,
                "experiment_id": experiment_id,
                "primary": cfg.transfer.primary,
                "baseline": cfg.transfer.baseline,
                "labels_per_class": labels,
                "num_groups": groups,
                "runs": rows,
                "source": source.ids,
                "tune_run_id": best.get("tune_run_id"),
            },
        )
        write_json(out / "metrics.json", metrics)
        _write_csv(out / "history.csv", history)
    return metrics


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
