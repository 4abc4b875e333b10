"""pretrain: train backbone + head on the source domain (best epoch by source val accuracy).

Reads params: seed, model, pretrain, trainer; outputs/prepare/source.
Writes outputs/pretrain/model/ (weights.safetensors of the best epoch, Lightning's best.ckpt,
model.json, mlflow.json with the run and LoggedModel ids), outputs/pretrain/metrics.json and
outputs/pretrain/history.csv.
"""

from __future__ import annotations

import csv
from pathlib import Path

import mlflow
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.data.store import load_domain
from pipeline.models.weights import save_weights
from pipeline.tracking.datasets import log_card_inputs
from pipeline.tracking.lineage import flatten, stage_tags
from pipeline.tracking.logger import run_logger
from pipeline.tracking.models import SPEC, log_weights_model
from pipeline.transfer.fit import fit
from stages._build import model_factory, pretrain_settings, trainer_kwargs
from stages._shell import OUTPUTS, read_json, run_stage, stage_output, use_tracking, write_json
from stages._target import to_tensors

STAGE = "pretrain"


def write_history(path: Path, rows: list[dict]) -> None:
    """Per-epoch metrics as CSV (a DVC plot)."""
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "epoch", k))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def run(cfg: DictConfig) -> dict:
    data_dir = OUTPUTS / "prepare" / "source"
    source = load_domain(data_dir)
    prepare = read_json(data_dir / "mlflow.json")
    settings = pretrain_settings(cfg)
    factory = model_factory(cfg)
    torch.manual_seed(cfg.seed)
    model = factory(source.num_classes)
    uri, experiment_id = use_tracking(cfg)
    params = {
        k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "pretrain", "trainer")
    }
    tags = {
        **stage_tags(STAGE, "."),
        "graftlab.prepare_run_id": prepare["run_id"],
        "graftlab.source_sha256": source.card()["sha256"],
    }
    with (
        mlflow.start_run(run_name=STAGE, experiment_id=experiment_id, tags=tags) as r,
        stage_output(STAGE) as out,
    ):
        mlflow.log_params(flatten({"seed": cfg.seed, **params}))
        card = source.card()
        log_card_inputs(
            card, data_dir / "arrays.safetensors", {"train": "training", "val": "validation"}
        )
        mlflow.log_text(OmegaConf.to_yaml(cfg), "config.yaml")
        result = fit(
            model,
            to_tensors(source, "train"),
            to_tensors(source, "val"),
            settings,
            trainer_kwargs=trainer_kwargs(cfg),
            logger=run_logger(uri, cfg.tracking.experiment, r.info.run_id),
            checkpoint_dir=out / "model",  # Lightning's best-epoch checkpoint: model/best.ckpt
        )
        spec = {
            "model": params["model"],
            "num_classes": source.num_classes,
            "classes": list(source.classes),
            "num_groups": model.num_groups,
            "data_sha256": card["sha256"],
            "dataset": source.name,
            "standardize": source.recipe.get("standardize"),
        }
        (out / "model").mkdir(exist_ok=True)
        save_weights(model, out / "model" / "weights.safetensors", metadata=spec)
        write_json(out / "model" / SPEC, spec)
        model_id = log_weights_model(
            f"source-{source.name}",
            model,
            spec,
            params=flatten(params["model"]),
            tags={"graftlab.role": "source", "graftlab.data_sha256": card["sha256"]},
        )
        metrics = {
            "best_val_acc": result.best_val_acc,
            "best_epoch": result.best_epoch,
            "train_seconds": result.seconds,
        }
        mlflow.log_metrics({f"best/{k}": v for k, v in metrics.items()}, model_id=model_id)
        write_json(
            out / "model" / "mlflow.json",
            {
                "run_id": r.info.run_id,
                "model_id": model_id,
                "experiment_id": experiment_id,
                "prepare_run_id": prepare["run_id"],
            },
        )
        write_json(out / "metrics.json", metrics)
        write_history(out / "history.csv", result.history)
        print(f"pretrain run: {uri}  experiment {experiment_id}  run {r.info.run_id}")
    return metrics


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
