"""evaluate, transductive setting: the only stage that reads target labels.

Scores every adapted model on the target test split, trains the target-trained oracle (reference
line, nested MLflow runs), ranks the unsupervised validators against the test labels over every
candidate (arm x seed x epoch, from the per-epoch predictions the transfer stage recorded without
labels), and ends like the inductive evaluate: metrics.json (the headline) and details.json,
report/ (report.md, report.html with its figures inside, PNGs, summary.json) logged to MLflow with
lineage links, plots/*.csv (every table dvc.yaml's plots read), and the verdict and where to look
printed last.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mlflow
import numpy as np
from omegaconf import DictConfig, OmegaConf
from safetensors.numpy import load_file

from pipeline.data.store import ARRAYS, load_domain
from pipeline.errors import GraftlabError
from pipeline.metrics.comparison import score_models
from pipeline.metrics.feature_distance import feature_distances
from pipeline.models.weights import load_model
from pipeline.report import transductive as report
from pipeline.report.headline import write_metrics
from pipeline.selection.picks import candidates
from pipeline.tracking import evaluation as track
from pipeline.tracking.arm_runs import ArmRunner
from pipeline.tracking.lineage import stage_tags
from pipeline.tracking.runs import log_scored, require_run
from pipeline.transfer.source import SourceModel
from pipeline.transfer.train import TargetTask, tensors
from stages import _build as build
from stages._files import PREDICTIONS, Layout, read_csv, read_ids, read_json, write_csv, write_json
from stages._shell import stage_output, use_tracking

STAGE = "evaluate"


def train_oracle(cfg: DictConfig, target, factory, source, runner_args: dict, out: Path) -> list:
    """The oracle arm per seed on every labelled target training image (the smallest class's
    count per class), its epoch chosen on the labelled target val split: a reference only."""
    name, groups = cfg.setting.oracle, build.num_groups(factory)
    smallest = int(np.bincount(target.splits["train"].y).min())
    task = TargetTask(target, smallest)
    runner = ArmRunner(task, factory, source, data_path=runner_args.pop("data_path"), **runner_args)
    rows = []
    for seed in build.transfer_seeds(cfg):
        arm = build.arm(cfg, name, groups, seed)
        arm = dataclasses.replace(
            arm, settings=dataclasses.replace(arm.settings, monitor="val/acc")
        )
        task.check(arm, "transfer.arms")
        row, _ = runner(arm, out, Path("oracle", f"seed{seed}.safetensors"))
        rows.append(row)
    return rows


def evaluate(cfg: DictConfig) -> dict:
    paths = Layout.of(cfg)
    target, source_data = load_domain(paths.domain("target")), load_domain(paths.domain("source"))
    source = SourceModel.load(paths.source_model)
    index = read_json(paths.index)
    if index.get("setting") != "transductive":
        raise GraftlabError(
            f"{paths.index} was written by a {index.get('setting', 'inductive')} transfer stage; "
            "re-run transfer with setting=transductive"
        )
    cfg, best = build.tuned_config(cfg, paths.best)
    build.say_kept(best)
    factory, conf = build.model_factory(cfg), float(cfg.evaluate.confidence)
    names, chosen = list(cfg.setting.validators), str(cfg.setting.validator)
    baseline, oracle = index["baseline"], str(cfg.setting.oracle)
    x, y = tensors(target.splits["test"])
    uri, experiment_id = use_tracking(cfg)
    require_run(index["run_id"], "transfer", uri, paths.index)
    tags = {
        **stage_tags(STAGE, "."),
        "graftlab.transfer_run_id": index["run_id"],
        "graftlab.source_model_id": source.ids["model_id"],  # as the inductive evaluate run
    }
    with (
        mlflow.start_run(run_name=STAGE, experiment_id=experiment_id, tags=tags) as run_,
        stage_output(paths.evaluate) as out,
    ):

        def load(row: dict):
            return load_model(factory, paths.transfer / row["path"], target.num_classes)

        scored = score_models(index["runs"], load, x, y)
        runner_args = {
            "tracking_uri": uri,
            "experiment": cfg.tracking.experiment,
            "tags": {**tags, "graftlab.role": "oracle"},
            "data_path": paths.domain("target") / ARRAYS,
            "fit_kwargs": {"trainer_kwargs": build.trainer_kwargs(cfg, False)},
        }
        oracle_rows = train_oracle(cfg, target, factory, source, runner_args, out / "report")
        scored += score_models(
            oracle_rows,
            lambda r: load_model(factory, out / "report" / r["path"], target.num_classes),
            x,
            y,
        )
        resolved = OmegaConf.to_container(cfg, resolve=True)
        test = track.log_evaluation_inputs(resolved, target, paths.domain("target") / ARRAYS)
        log_scored(scored, test, {**tags, "graftlab.role": "score"})
        acc = {}
        for r in sorted(scored, key=lambda r: r.seed):
            acc.setdefault(r.arm, []).append(r.acc)
        cands = candidates(
            read_csv(paths.history), load_file(str(paths.transfer / PREDICTIONS)), y.numpy(), names
        )
        ev = report.assess(
            acc,
            cands,
            baseline=baseline,
            oracle=oracle,
            validator=chosen,
            validators=names,
            confidence=conf,
            source=source_data.name,
            target=target.name,
        )
        ev.domain = domain_scores(cfg, index["runs"], load, source, source_data, target, factory)
        report.write(ev, out / "report")
        first = next(r for r in scored if r.arm == index["primary"])  # as inductively
        tables = report.plot_tables(ev, first.confusion, target.classes, first.freeze_groups)
        for name, rows in tables.items():
            write_csv(out / "plots" / name, rows)
        metrics = ev.flat_metrics()
        write_json(out / "report" / "mlflow.json", {"run_id": run_.info.run_id})
        write_metrics(out, metrics, report.HEADLINE)  # metrics.json (headline) and details.json
        links = track.evaluation_links(index, best, source.ids, read_ids(paths.prepare_ids), target)
        summary = report.verdict_paragraph(ev, bold=False)
        mlflow.set_tag("graftlab.chosen", ", ".join(f"{a} epoch {e}" for a, e, _ in ev.chosen))
        track.log_evaluation_results(metrics, ev.verdict, out / "report", summary, links)
    print(summary)
    print(track.where_to_look(paths.evaluate / "report", uri, experiment_id, run_.info.run_id))
    return metrics


def domain_scores(cfg, runs, load, source, source_data, target, factory) -> dict:
    """Feature PAD and MMD^2 (source val vs target test inputs) of the source model and of every
    trained arm (mean over its seeds)."""
    s = cfg.evaluate.scores
    if not s.enabled:
        return {}
    xs, xt = tensors(source_data.splits["val"])[0], tensors(target.splits["test"])[0]
    kw = {"max_samples": int(s.max_samples), "seed": int(cfg.seed)}
    before = load_model(factory, source.path, source.spec["num_classes"])
    out = {"source model": feature_distances(before, xs, xt, **kw)}
    rows = {}
    for r in runs:
        rows.setdefault(r["arm"], []).append(feature_distances(load(r), xs, xt, **kw))
    for arm, values in rows.items():
        out[arm] = {k: float(np.mean([v[k] for v in values])) for k in ("pad", "mmd2")}
    return out
