"""pretrain: train backbone + head on the source domain (best epoch by source val accuracy), or
(pretrain=external) take a pretrained model from a local file as the source.

Reads params: seed, model, pretrain, trainer, paths; <paths.prepare>/source.
Writes <paths.pretrain>/model/ (weights.safetensors of the best epoch, Lightning's best.ckpt,
model.json, mlflow.json with the run and LoggedModel ids), metrics.json and history.csv.
"""

from __future__ import annotations

import mlflow
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.data.store import ARRAYS, load_domain
from pipeline.errors import ConfigError
from pipeline.models.grouped import GroupedNet
from pipeline.models.timm_backbone import Weights, portable_config
from pipeline.models.weights import save_weights
from pipeline.tracking.datasets import log_card_inputs
from pipeline.tracking.lineage import flatten, stage_tags
from pipeline.tracking.links import backbone_name, describe, run_page, url
from pipeline.tracking.logger import run_logger
from pipeline.tracking.models import log_model_metrics, log_weights_model
from pipeline.transfer.fit import fit
from pipeline.transfer.source import IDS, SPEC, WEIGHTS
from pipeline.transfer.train import tensors
from stages._build import check_input, model_factory, pretrain_settings, trainer_kwargs
from stages._files import Layout, read_ids, write_csv, write_json
from stages._shell import run_stage, stage_output, use_tracking

STAGE = "pretrain"
TIMM = "pipeline.models.timm_backbone.timm_backbone"


def external_source(cfg: DictConfig) -> tuple[GroupedNet, Weights]:
    """The pretrained model named by ``model.weights``, with its own classifier head."""
    from pipeline.models.timm_backbone import locate_weights

    if cfg.model.get("_target_") != TIMM:
        raise ConfigError("model", cfg.model.get("_target_"), "model=timm for pretrain=external")
    if not cfg.model.get("weights"):
        allowed = "a local weights file or timm / Hugging Face model folder (the source model)"
        raise ConfigError("model.weights", None, allowed)
    found = locate_weights(cfg.model.weights, cfg.model.get("weights_sha256"))
    return model_factory(cfg, pretrained=True)(None), found


def run(cfg: DictConfig) -> dict:
    paths = Layout.of(cfg)
    data_dir = paths.domain("source")
    source = load_domain(data_dir)
    external = bool(cfg.pretrain.get("external"))
    if external:
        model, found = external_source(cfg)
    else:
        settings = pretrain_settings(cfg)
        torch.manual_seed(cfg.seed)
        model = model_factory(cfg, pretrained=True)(source.num_classes)
    check_input(model, source.input_shape, cfg.model._target_)
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
    timm = params["model"].get("_target_") == TIMM  # rebuildable without the weights file
    spec = {
        "model": portable_config(params["model"]) if timm else params["model"],
        "num_classes": model.num_classes,
        "classes": list(source.classes),
        "num_groups": model.num_groups,
        "data_sha256": card["sha256"],
        "dataset": source.name,
        "normalize": source.recipe.get("normalize"),
        "input_shape": list(source.input_shape),
    }
    model_tags = {"graftlab.role": "source", "graftlab.data_sha256": card["sha256"]}
    if external:  # lineage ends at the exact weights file: its sha256 and where it came from
        origin = {"weights": str(found.path), "sha256": found.sha256}
        origin |= {k: cfg.pretrain.get(k) for k in ("origin", "pretrained_on")}
        names = found.label_names or [str(i) for i in range(model.num_classes)]
        spec |= {"classes": list(names), "external": origin}  # + where the weights came from
        spec |= {"dataset": origin["pretrained_on"] or f"external {cfg.model.arch}"}
        spec["data_sha256"] = None
        model_tags = {"graftlab.role": "source", "graftlab.external": "true"}
        model_tags |= {f"graftlab.weights_{k}": str(v) for k, v in origin.items() if v}
        tags |= {"graftlab.weights_sha256": found.sha256}
    with (
        mlflow.start_run(run_name=STAGE, experiment_id=experiment_id, tags=tags) as r,
        stage_output(paths.pretrain) as out,
    ):
        mlflow.log_params(flatten({"seed": cfg.seed, **params}))
        mlflow.log_text(OmegaConf.to_yaml(cfg), "config.yaml")
        (out / "model").mkdir()
        if external:
            if found.pretrained_cfg:
                mlflow.log_dict(found.pretrained_cfg, "external/pretrained_cfg.json")
            metrics, history = {"external": 1, "source_classes": model.num_classes}, []
        else:
            log_card_inputs(card, data_dir / ARRAYS, {"train": "training", "val": "validation"})
            result = fit(
                model,
                tensors(source.splits["train"]),
                tensors(source.splits["val"]),
                settings,
                trainer_kwargs=trainer_kwargs(cfg),
                logger=run_logger(uri, cfg.tracking.experiment, r.info.run_id),
                checkpoint_dir=out / "model",  # Lightning's best-epoch checkpoint: best.ckpt
            )
            metrics = {"best_val_acc": result.best_val_acc, "best_epoch": result.best_epoch}
            history = result.history
        save_weights(model, out / "model" / WEIGHTS, metadata=spec)
        write_json(out / "model" / SPEC, spec)
        name = f"source-{'external-' + cfg.model.arch if external else source.name}"
        model_params = {**flatten(params["model"]), "dataset": spec["dataset"]}
        model_params |= {"data_sha256": spec["data_sha256"], "prepare_run_id": prepare_run}
        model_params = {k: v for k, v in model_params.items() if v is not None}
        model_id = log_weights_model(name, model, spec, params=model_params, tags=model_tags)
        if not external:
            best = {"val_acc": metrics["best_val_acc"], "best_epoch": metrics["best_epoch"]}
            log_model_metrics(model_id, best)
            # wall time to MLflow only: metrics.json is byte-identical for a commit and seed
            mlflow.log_metric("train_seconds", result.seconds)
        origin = (
            f"sha256 {found.sha256}" if external else f"{source.name} (sha256 {card['sha256']})"
        )
        describe(
            experiment_id,
            f"{'Source model' if external else 'Pretrain'} {backbone_name(params['model'])} "
            f"from {origin}; the source model is this run's output.",
            {"source model": ("model", model_id), "prepare run (data)": ("run", prepare_run)},
        )
        ids = {"run_id": r.info.run_id, "model_id": model_id, "experiment_id": experiment_id}
        write_json(out / "model" / IDS, {**ids, "prepare_run_id": prepare_run})
        write_json(out / "metrics.json", metrics)
        if history:
            write_csv(out / "history.csv", history)
        else:  # an external model: no epochs here
            (out / "history.csv").write_text("epoch\n")
        what = (
            f"external model, {model.num_classes} classes"
            if external
            else f"source val acc {result.best_val_acc:.3f} (epoch {result.best_epoch})"
        )
        print(f"pretrain: {what}; run {url(uri, run_page(experiment_id, r.info.run_id))}")
    return metrics


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
