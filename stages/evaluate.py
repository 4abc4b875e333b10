"""evaluate: score every arm on the target test split and decide whether transfer helped.

Reads params: seed, data, model, transfer, evaluate, trainer, paths; <paths.prepare>/{source,
target}, <paths.pretrain>/model, <paths.tune>/best.yaml, <paths.transfer>/{models,history.csv}.
Writes <paths.evaluate>/metrics.json (the headline keys `dvc metrics show` leads with),
details.json (every other number), report/ (report.md, report.html with its figures inside, PNG
figures, summary.json) and plots/*.csv (for `dvc plots show`). Everything is logged to one MLflow
evaluation run (params, config, test split, the models it scored, one score run per model).
Curves and scores use the same paired seeds and label budgets as the arms; numbers come with
intervals over those seeds.
"""

from __future__ import annotations

import mlflow
import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline.data.store import ARRAYS, load_domain
from pipeline.metrics.comparison import score_models
from pipeline.metrics.efficiency import epochs_saved
from pipeline.models.weights import load_model
from pipeline.progress import bar, counted
from pipeline.report import plot_tables, write_report
from pipeline.report.evaluation import add_curves, add_large_validation, add_scores, same_models
from pipeline.report.headline import write_metrics
from pipeline.report.markdown import verdict_paragraph
from pipeline.report.summary import Evaluation, recommend
from pipeline.tracking import evaluation as track
from pipeline.tracking.lineage import stage_tags
from pipeline.tracking.runs import log_curves, log_scored, require_run
from pipeline.transfer.source import SourceModel
from pipeline.transfer.train import TrainedAccuracy, tensors
from stages import _build as build
from stages import _setting as setting
from stages import _transductive as transductive
from stages._files import Layout, read_csv, read_ids, read_json, write_csv, write_json
from stages._shell import run_stage, stage_output, use_tracking

STAGE = "evaluate"


def seeds_for(cfg: DictConfig, key: str) -> list[int]:
    """The first ``evaluate.curves.<key>.seeds`` transfer seeds (null: all of them)."""
    n = cfg.evaluate.curves[key].seeds
    return build.transfer_seeds(cfg)[: None if n is None else int(n)]


def run(cfg: DictConfig) -> dict:
    if setting.transductive(cfg):  # domain adaptation: its own report (stages/_transductive.py)
        return transductive.evaluate(cfg)
    paths = Layout.of(cfg)
    target, source_data = load_domain(paths.domain("target")), load_domain(paths.domain("source"))
    source = SourceModel.load(paths.source_model)
    index = read_json(paths.index)
    cfg, best = build.tuned_config(cfg, paths.best)
    build.say_kept(best)
    factory, conf, groups = build.model_factory(cfg), cfg.evaluate.confidence, index["num_groups"]
    primary, baseline, task = index["primary"], index["baseline"], build.target_task(cfg, target)
    task.check_budget(build.transfer_seeds(cfg)[0])  # before any run starts
    uri, experiment_id = use_tracking(cfg)
    require_run(index["run_id"], "transfer", uri, paths.index)
    tags = {
        **stage_tags(STAGE, "."),
        "graftlab.transfer_run_id": index["run_id"],
        "graftlab.source_model_id": source.ids["model_id"],
    }
    with (
        mlflow.start_run(run_name=STAGE, experiment_id=experiment_id, tags=tags) as run_,
        stage_output(paths.evaluate) as out,
    ):
        resolved = OmegaConf.to_container(cfg, resolve=True)
        test = track.log_evaluation_inputs(resolved, target, paths.domain("target") / ARRAYS)
        x, y = tensors(target.splits["test"])
        load = lambda row: load_model(factory, paths.transfer / row["path"], target.num_classes)  # noqa: E731
        scored = score_models(index["runs"], load, x, y)
        log_scored(scored, test, {**tags, "graftlab.role": "score"})
        ev = Evaluation.of_scored(
            scored,
            primary,
            baseline,
            conf,
            source=source.spec.get("dataset", "source"),
            target=target.name,
            budget=task.headline,
            labels_per_class=task.labels_per_class,
            classes=target.classes,
            runs={"transfer": index["run_id"], "tune": best.get("tune_run_id")}
            | {"evaluate": run_.info.run_id},
            epochs_saved=epochs_saved(read_csv(paths.history), primary, baseline),
        )
        arm_for = {n: (lambda s, n=n: build.arm(cfg, n, groups, s)) for n in ev.arms}
        ev.settings = arm_for[primary](int(cfg.seed)).settings.as_dict()
        kwargs = build.trainer_kwargs(cfg, False)
        accuracy = TrainedAccuracy(task, factory, source, "test", kwargs, build.ensembles(cfg))
        for r in scored:  # a curve point that is an arm already trained is not trained again
            accuracy.remember(arm_for[r.arm](r.seed), task.labels_per_class, r.acc)
        curves = cfg.evaluate.curves
        depth = seeds_for(cfg, "freeze_depth") if curves.freeze_depth.enabled else []
        smallest = int(np.bincount(target.splits["train"].y).min())
        budgets = list(curves.label_efficiency.labels_per_class)
        label_seeds = seeds_for(cfg, "label_efficiency")
        with bar("evaluate: curves", None) as progress:
            point = counted(accuracy, progress, lambda arms, n: f"{len(arms)} runs at n={n}")
            add_curves(ev, arm_for, groups, point, depth, label_seeds, budgets, smallest)
        log_curves(ev.freeze_depth, ev.label_efficiency)
        ev.recommendation = recommend(
            k=ev.arms[primary].freeze_groups,
            groups=groups,
            tuned="transfer.freeze_groups" in (best.get("overrides") or {}),
            accuracy=ev.arms[primary].acc,
            same_as=same_models(index["runs"], primary),
            curve=ev.freeze_depth,
            confidence=conf,
        )
        if cfg.evaluate.scores.enabled:
            s, budgets = cfg.evaluate.scores, {seed: task.budget(seed) for seed in ev.seeds}
            add_scores(
                ev,
                factory,
                source,
                budgets,
                target.splits["train"],
                source_data.splits["val"],
                s.max_samples,
                s.mmd_permutations,
                cfg.seed,
            )
        if cfg.evaluate.large_validation:
            full = TrainedAccuracy(
                task.with_validation(None), factory, source, "test", kwargs, build.ensembles(cfg)
            )
            add_large_validation(ev, arm_for, full)
        write_report(ev, out / "report")
        for name, rows in plot_tables(ev).items():
            write_csv(out / "plots" / name, rows)
        metrics = ev.flat_metrics()
        write_json(out / "report" / "mlflow.json", {"run_id": run_.info.run_id})
        write_metrics(out, metrics)  # metrics.json (headline) and details.json
        links = track.evaluation_links(index, best, source.ids, read_ids(paths.prepare_ids), target)
        summary = verdict_paragraph(ev)
        track.log_evaluation_results(metrics, ev.verdict, out / "report", summary, links)
    print(summary)
    print(track.where_to_look(paths.evaluate / "report", uri, experiment_id, run_.info.run_id))
    return metrics


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
