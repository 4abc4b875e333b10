"""pretrain: train backbone + head on the source domain (best epoch by source val accuracy).

Reads params: seed, model, pretrain, trainer, paths; <paths.prepare>/source.
Writes <paths.pretrain>/model/ (weights.safetensors of the best epoch, Lightning's best.ckpt,
model.json, mlflow.json with the run and LoggedModel ids), metrics.json and history.csv.
"""

from __future__ import annotations

import mlflow
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.data.store import ARRAYS, load_domain
from pipeline.models.weights import save_weights
from pipeline.tracking.datasets import log_card_inputs
from pipeline.tracking.lineage import flatten, stage_tags
from pipeline.tracking.links import backbone_name, describe, run_page, url
from pipeline.tracking.logger import run_logger
from pipeline.tracking.models import log_model_metrics, log_weights_model
from pipeline.transfer.fit import fit
from pipeline.transfer.source import IDS, SPEC, WEIGHTS
from pipeline.transfer.train import tensors
from stages._build import model_factory, pretrain_settings, trainer_kwargs
from stages._files import Layout, read_ids, write_csv, write_json
from stages._shell import run_stage, stage_output, use_tracking

STAGE = "pretrain"


def run(cfg: DictConfig) -> dict:
    paths = Layout.of(cfg)
    data_dir = paths.domain("source")
    source = load_domain(data_dir)
    settings = pretrain_settings(cfg)
    torch.manual_seed(cfg.seed)
    model = model_factory(cfg)(source.num_classes)
    uri, experiment_id = use_tracking(cfg)
    params = {
        k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("model", "pretrain", "trainer")
    }
    card = source.card()
    prepare = read_ids(paths.prepare_ids)
    prepare_run = prepare.get("run_id") if prepare.get("source_sha256") == card["sha256"] else None
    tags = {**stage_tags(STAGE, "."), "graftlab.source_sha256": card["sha256"]}
    if prepare_run:
        tags["graftlab.prepare_run_id"] = prepare_run
    with (
        mlflow.start_run(run_name=STAGE, experiment_id=experiment_id, tags=tags) as r,
        stage_output(paths.pretrain) as out,
    ):
        mlflow.log_params(flatten({"seed": cfg.seed, **params}))
        log_card_inputs(card, data_dir / ARRAYS, {"train": "training", "val": "validation"})
        mlflow.log_text(OmegaConf.to_yaml(cfg), "config.yaml")
        result = fit(
            model,
            tensors(source.splits["train"]),
            tensors(source.splits["val"]),
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
            "normalize": source.recipe.get("normalize"),
        }
        (out / "model").mkdir(exist_ok=True)
        save_weights(model, out / "model" / WEIGHTS, metadata=spec)
        write_json(out / "model" / SPEC, spec)
        model_id = log_weights_model(
            f"source-{source.name}",
            model,
            spec,
            params={
                **flatten(params["model"]),
                "dataset": source.name,
                "data_sha256": card["sha256"],
                **({"prepare_run_id": prepare_run} if prepare_run else {}),
            },
            tags={"graftlab.role": "source", "graftlab.data_sha256": card["sha256"]},
        )
        # wall time goes to MLflow only: metrics.json is byte-identical for the same commit and seed
        metrics = {"best_val_acc": result.best_val_acc, "best_epoch": result.best_epoch}
        log_model_metrics(
            model_id, {"val_acc": result.best_val_acc, "best_epoch": result.best_epoch}
        )
        mlflow.log_metric("train_seconds", result.seconds)
        describe(
            experiment_id,
            f"Pretrain {backbone_name(params['model'])} on {source.name} "
            f"(sha256 {card['sha256']}); the source model is this run's output.",
            {"source model": ("model", model_id), "prepare run (data)": ("run", prepare_run)},
        )
        ids = {"run_id": r.info.run_id, "model_id": model_id, "experiment_id": experiment_id}
        write_json(out / "model" / IDS, {**ids, "prepare_run_id": prepare_run})
        write_json(out / "metrics.json", metrics)
        write_csv(out / "history.csv", result.history)
        print(
            f"pretrain: source val acc {result.best_val_acc:.3f} (epoch {result.best_epoch}); "
            f"run {url(uri, run_page(experiment_id, r.info.run_id))}"
        )
    return metrics


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
