"""transfer: train every arm (scratch, linear probe, freeze-k, fine-tune, L2-SP) on the target.

Reads params: seed, data.labels_per_class, model, transfer, trainer, paths;
<paths.prepare>/target, <paths.pretrain>/model, <paths.tune>/best.yaml (its overrides replace
the shared transfer settings when tuning is on).
Writes <paths.transfer>/models/ (<arm>/seed<s>.safetensors and index.json with the MLflow run and
LoggedModel of each), metrics.json (validation accuracy per arm) and history.csv (per-epoch
validation accuracy of every run).
Seeds are paired: seed s gives every arm the same labelled subset and the same random init.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from mlflow.entities import LoggedModelInput
from omegaconf import DictConfig, OmegaConf

from pipeline.data.store import ARRAYS, load_domain
from pipeline.tracking.arm_runs import ArmRunner
from pipeline.tracking.lineage import flatten, stage_tags
from pipeline.transfer.prefix_cache import PrefixCache
from pipeline.transfer.source import SourceModel
from pipeline.transfer.train import TargetTask
from stages import _build as build
from stages._files import INDEX, Layout, write_csv, write_json
from stages._shell import run_stage, stage_output, use_tracking

STAGE = "transfer"


def run(cfg: DictConfig) -> dict:
    paths = Layout.of(cfg)
    target = load_domain(paths.domain("target"))
    source = SourceModel.load(paths.source_model)
    cfg, best = build.tuned_config(cfg, paths.best)
    names = build.arm_names(cfg)
    factory = build.model_factory(cfg)
    groups = build.num_groups(factory)
    labels, seeds = cfg.data.labels_per_class, build.transfer_seeds(cfg)
    arms = [build.arm(cfg, n, groups, s) for n in names for s in seeds]
    task = TargetTask(target, labels)
    task.labelled_index(seeds[0])  # checks the label budget before any training
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
    )
    with (
        mlflow.start_run(run_name=STAGE, experiment_id=experiment_id, tags=tags) as parent,
        stage_output(paths.transfer) as out,
    ):
        transfer = OmegaConf.to_container(cfg.transfer, resolve=True)
        mlflow.log_params(flatten({"transfer": transfer, "labels_per_class": labels}))
        mlflow.log_text(OmegaConf.to_yaml(cfg), "config.yaml")
        mlflow.log_input(model=LoggedModelInput(source.ids["model_id"]))
        # all arms at once: the paired seeds of an arm (and arms that differ only in init and
        # learning rates) train as one vectorised ensemble, each seed in its own MLflow run
        paths = [Path("models", a.name, f"seed{a.settings.seed}.safetensors") for a in arms]
        rows, history = runner(arms, out, paths)
        metrics = {
            n: {"val_acc": float(np.mean([r["best_val_acc"] for r in rows if r["arm"] == n]))}
            for n in names
        }
        metrics |= {"labels_per_class": labels, "seeds": len(seeds)}
        index = {
            "run_id": parent.info.run_id,
            "experiment_id": experiment_id,
            "runs": rows,
            "primary": cfg.transfer.primary,
            "baseline": cfg.transfer.baseline,
            "labels_per_class": labels,
            "num_groups": groups,
            "source": source.ids,
            "tune_run_id": best.get("tune_run_id"),
        }
        write_json(out / INDEX, index)
        write_json(out / "metrics.json", metrics)
        write_csv(out / "history.csv", history)
    return metrics


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
