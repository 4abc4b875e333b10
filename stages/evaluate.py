"""evaluate: score every arm on the target test split and decide whether transfer helped.

Reads params: seed, data.labels_per_class, model, transfer, evaluate, trainer, paths;
<paths.prepare>/{source,target}, <paths.pretrain>/model, <paths.tune>/best.yaml,
<paths.transfer>/{models,history.csv}.
Writes <paths.evaluate>/metrics.json (flat keys for `dvc metrics show`: transfer.test_acc,
scratch.test_acc, transfer_gain, negative_transfer, ...), report/ (report.md, its PNG figures,
summary.json) and plots/*.csv (for `dvc plots show`). Everything is logged to one MLflow
evaluation run linked to the models it scored.
"""

from __future__ import annotations

import mlflow
import numpy as np
from omegaconf import DictConfig

from pipeline.data.domain import Domain
from pipeline.data.store import load_domain
from pipeline.metrics.comparison import gaps, paired_gain, score_models, summarise_arms
from pipeline.metrics.efficiency import label_savings, mean_compute_saved
from pipeline.metrics.source_scores import depth_ranking, source_model_scores
from pipeline.metrics.suite import READS
from pipeline.models.weights import load_model
from pipeline.report import plot_tables, write_report
from pipeline.report.markdown import verdict_paragraph
from pipeline.report.summary import Evaluation, Score
from pipeline.tracking.lineage import stage_tags
from pipeline.tracking.runs import log_curves, log_scored
from pipeline.transfer.curves import freeze_depth_curve, label_curve, mean
from pipeline.transfer.source import SourceModel
from pipeline.transfer.train import TargetTask, TrainedAccuracy, tensors
from stages import _build as build
from stages._files import Layout, read_csv, read_json, write_csv, write_json
from stages._shell import run_stage, stage_output, use_tracking

STAGE = "evaluate"


def add_curves(ev: Evaluation, cfg: DictConfig, task: TargetTask, factory, source) -> None:
    """The freeze-depth and label-efficiency curves (extra models, seeded like the arms)."""
    curves, seeds, groups = cfg.evaluate.curves, build.transfer_seeds(cfg), factory(2).num_groups
    accuracy = TrainedAccuracy(
        task, factory, source, "test", build.trainer_kwargs(cfg, False), build.ensembles(cfg)
    )

    def arm_for(name: str):
        return lambda seed: build.arm(cfg, name, groups, seed)

    if curves.freeze_depth.enabled:
        use = seeds[: int(curves.freeze_depth.seeds)]
        ev.freeze_depth = freeze_depth_curve(
            arm_for(ev.baseline), groups, task.labels_per_class, use, accuracy
        )
    if budgets := list(curves.label_efficiency.labels_per_class):
        smallest = int(np.bincount(task.target.splits["train"].y).min())
        use = seeds[: int(curves.label_efficiency.seeds)]
        rows = label_curve(
            arm_for(ev.primary), arm_for(ev.baseline), budgets, smallest, use, accuracy
        )
        ev.label_efficiency = rows
        ev.labels_saved = label_savings(
            [r.labels_per_class for r in rows],
            [mean(r.transfer) for r in rows],
            [mean(r.scratch) for r in rows],
            ev.arms[ev.primary].acc.mean,
        )
    log_curves(ev.freeze_depth, ev.label_efficiency)


def add_scores(ev: Evaluation, cfg: DictConfig, target: Domain, source_data: Domain, model) -> None:
    """Transferability and domain scores of the source model, ranked against the depth curve."""
    s = cfg.evaluate.scores
    values = source_model_scores(
        model,
        target.splits["train"],
        source_data.splits["val"],
        max_samples=s.max_samples,
        permutations=s.mmd_permutations,
        seed=cfg.seed,
    )
    ev.scores = {k: Score(float(v), READS[k]) for k, v in values.items()}
    if ev.freeze_depth:
        realised = [mean(r.frozen) for r in ev.freeze_depth[1:]]
        ev.ranking = depth_ranking(model, target.splits["train"], realised)


def run(cfg: DictConfig) -> dict:
    paths = Layout.of(cfg)
    target, source_data = load_domain(paths.domain("target")), load_domain(paths.domain("source"))
    source = SourceModel.load(paths.source_model)
    index = read_json(paths.index)
    cfg, best = build.tuned_config(cfg, paths.best)
    factory, conf = build.model_factory(cfg), float(cfg.evaluate.confidence)
    primary, baseline = index["primary"], index["baseline"]
    _, experiment_id = use_tracking(cfg)
    tags = {
        **stage_tags(STAGE, "."),
        "graftlab.transfer_run_id": index["run_id"],
        "graftlab.source_model_id": source.ids["model_id"],
    }
    with (
        mlflow.start_run(run_name=STAGE, experiment_id=experiment_id, tags=tags) as run_,
        stage_output(paths.evaluate) as out,
    ):
        x, y = tensors(target.splits["test"])
        load = lambda row: load_model(factory, paths.transfer / row["path"], target.num_classes)  # noqa: E731
        scored = score_models(index["runs"], load, x, y)
        log_scored(scored)
        arms = summarise_arms(scored, conf)
        first = next(r for r in scored if r.arm == primary)
        ev = Evaluation(
            source=source.spec.get("dataset", "source"),
            target=target.name,
            labels_per_class=index["labels_per_class"],
            confidence=conf,
            primary=primary,
            baseline=baseline,
            arms=arms,
            ntg=gaps(arms, baseline, conf),
            gain=paired_gain(arms[primary], arms[baseline], conf),
            classes=target.classes,
            confusion=first.confusion,
            tuned_freeze_groups=(best.get("overrides") or {}).get("transfer.freeze_groups"),
            compute_saved=mean_compute_saved(read_csv(paths.history), primary, baseline),
        )
        add_curves(ev, cfg, TargetTask(target, index["labels_per_class"]), factory, source)
        if cfg.evaluate.scores.enabled:
            model = load_model(factory, source.path, source.spec["num_classes"])
            add_scores(ev, cfg, target, source_data, model)
        write_report(ev, out / "report")
        for name, rows in plot_tables(ev).items():
            write_csv(out / "plots" / name, rows)
        metrics = ev.flat_metrics()
        write_json(out / "report" / "mlflow.json", {"run_id": run_.info.run_id})
        write_json(out / "metrics.json", metrics)
        mlflow.set_tag("graftlab.verdict", ev.verdict)
        logged = {k: float(v) for k, v in metrics.items() if v is not None}
        mlflow.log_metrics(logged, model_id=first.model_id)
        mlflow.log_artifacts(str(out / "report"), artifact_path="report")
    print(verdict_paragraph(ev))
    return metrics


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
