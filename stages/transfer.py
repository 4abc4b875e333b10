"""transfer: train every arm (scratch, linear probe, freeze-k, fine-tune, L2-SP) on the target.

Reads params: seed, data.labels_per_class, model, transfer, trainer, paths;
<paths.prepare>/target, <paths.pretrain>/model, <paths.tune>/best.yaml (its overrides replace
the shared transfer settings when tuning is on).
Writes <paths.transfer>/models/ (<arm>/seed<s>.safetensors and index.json with the MLflow run and
LoggedModel of each), metrics.json (validation accuracy per arm) and history.csv (per-epoch
validation accuracy of every run).
Transductive setting (-S setting=transductive, stages/_setting.py): the target is read without any
label, the arms train on labelled source + unlabelled target, validators score every epoch
(history.csv columns val_<name>) and choose the stopping epoch; models/predictions.safetensors
holds each run's per-epoch predicted classes on the target test inputs (scored in evaluate).
Seeds are paired: seed s gives every arm the same labelled subset and the same random init.
Inductively the arms train at once, as vectorised ensembles of their paired seeds (and of arms
that differ only in init and learning rates), each seed still its own MLflow run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import LoggedModelInput
from omegaconf import DictConfig, OmegaConf
from safetensors.numpy import save_file

from pipeline.data.store import ARRAYS
from pipeline.progress import track
from pipeline.tracking.arm_runs import ArmRunner, describe_transfer
from pipeline.tracking.lineage import flatten, stage_tags
from pipeline.transfer.prefix_cache import PrefixCache
from pipeline.transfer.source import SourceModel
from stages import _build as build
from stages import _setting as setting
from stages._files import INDEX, PREDICTIONS, Layout, write_csv, write_json
from stages._shell import run_stage, stage_output, use_tracking

STAGE = "transfer"
log = logging.getLogger(STAGE)


def run(cfg: DictConfig) -> dict:
    paths = Layout.of(cfg)
    task = setting.target_task(cfg, paths)
    source = SourceModel.load(paths.source_model)
    cfg, best = build.tuned_config(cfg, paths.best)
    names = build.arm_names(cfg)
    factory = build.model_factory(cfg)
    groups = build.num_groups(factory)
    labels, seeds = task.labels_per_class, build.transfer_seeds(cfg)
    arms = [build.arm(cfg, n, groups, s) for s in seeds for n in names]
    if not setting.transductive(cfg):  # the label budget, checked before any training
        task.check_budget(seeds[0])
    for arm in arms[: len(names)]:
        task.check(arm)  # every stream an arm reads is there, before any training
    build.say_kept(best)
    callbacks = setting.epoch_scores(cfg, task)
    uri, experiment_id = use_tracking(cfg)
    tags = {
        **stage_tags(STAGE, "."),
        "graftlab.source_run_id": source.ids["run_id"],
        "graftlab.source_model_id": source.ids["model_id"],
    }
    runner = ArmRunner(
        task,
        factory,
        source,
        uri,
        cfg.tracking.experiment,
        tags,
        data_path=paths.domain("target") / ARRAYS,
        tune_run_id=best.get("tune_run_id"),
        fit_kwargs={
            "trainer_kwargs": build.trainer_kwargs(cfg, False),
            "cache": PrefixCache(),
            "vectorise": build.ensembles(cfg),
        },
        source_path=paths.domain("source") / ARRAYS if task.source_data else None,
    )
    rows, history, predictions = [], [], {}
    with (
        mlflow.start_run(run_name=STAGE, experiment_id=experiment_id, tags=tags) as parent,
        stage_output(paths.transfer) as out,
    ):
        transfer = OmegaConf.to_container(cfg.transfer, resolve=True)
        mlflow.log_params(flatten({"transfer": transfer, "labels_per_class": labels}))
        mlflow.log_text(OmegaConf.to_yaml(cfg), "config.yaml")
        mlflow.log_input(model=LoggedModelInput(source.ids["model_id"]))
        trained: dict[str, tuple[dict, list]] = {}  # fingerprint -> the run that trained it
        said: set[tuple[str, str]] = set()
        unique = {}  # trained together here; the rest one by one below, as without ensembles
        together = build.ensembles(cfg) and not setting.transductive(cfg)
        if build.ensembles(cfg) and not together:
            log.info("transductive: validators score one network per fit; seeds train one by one")
        for arm in arms if together else []:
            unique.setdefault(arm.fingerprint(groups), arm)
        todo = list(unique.values())
        ran = dict(zip(unique, runner.many(todo, out, [model_path(a) for a in todo]), strict=True))
        for arm in track(arms, STAGE, lambda a: f"{a.name} seed {a.settings.seed}"):
            key = arm.fingerprint(groups)
            if key in trained:  # e.g. freeze_k at k=0 is finetune: train once, report both
                row, rows_h = trained[key]
                if (arm.name, row["arm"]) not in said:  # once per pair, not once per seed
                    said.add((arm.name, row["arm"]))
                    log.warning(
                        "%s trains the same model as %s: trained once", arm.name, row["arm"]
                    )
                rows.append({**row, "arm": arm.name, "same_as": row["arm"]})
                history += [{**h, "arm": arm.name} for h in rows_h]
                seed = arm.settings.seed
                if f"{row['arm']}/seed{seed}" in predictions:
                    predictions[f"{arm.name}/seed{seed}"] = predictions[f"{row['arm']}/seed{seed}"]
                continue
            scores = [] if key in ran else callbacks()
            trained[key] = row, rows_h = ran.get(key) or runner(arm, out, model_path(arm), scores)
            rows.append(row)
            history += rows_h
            for cb in scores:  # per-epoch predictions on the unlabelled target test inputs
                predictions[f"{arm.name}/seed{arm.settings.seed}"] = np.stack(cb.predictions)
        metrics = setting.arm_metrics(rows, names) | {
            "labels_per_class": labels,
            "seeds": len(seeds),
        }
        index = {
            "run_id": parent.info.run_id,
            "experiment_id": experiment_id,
            "runs": rows,
            "primary": cfg.transfer.primary,
            "baseline": cfg.transfer.baseline,
            "labels_per_class": labels,
            "val_per_class": task.val_per_class,
            "num_groups": groups,
            "source": source.ids,
            "tune_run_id": best.get("tune_run_id"),
            "setting": setting.name(cfg),
            "tuned": best.get("overrides", {}),  # applied; explicit values kept instead:
            "kept": best.get("kept", {}),
        }
        if predictions:
            save_file(predictions, str(out / PREDICTIONS))
        write_json(out / INDEX, index)
        write_json(out / "metrics.json", metrics)
        write_csv(out / "history.csv", history)
        describe_transfer(experiment_id, names, len(seeds), source.ids, best.get("tune_run_id"))
    print(f"transfer: {setting.summary(cfg, metrics, names)}; models in {paths.transfer}")
    return metrics


def model_path(arm) -> Path:
    return Path("models", arm.name, f"seed{arm.settings.seed}.safetensors")


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
