"""rank: score several candidate sources on the labelled target budget before any target training,
then (optionally) train one arm from each and report how well every score ranked them.

Reads params: seed, source, data.labels_per_class, transfer, trainer, paths;
<paths.prepare>/{source,target}, <paths.pretrain>/model (a candidate may name it).
Writes <paths.rank>/ranking.json (per candidate: scores, realised test accuracy per seed),
ranking.md (the table, the realised order and each score's Kendall tau) and metrics.json.
With no candidates (the default) it writes an empty ranking. Each candidate's images are the
prepared target as that network expects them (its own input size, channels and normalisation).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mlflow
from omegaconf import DictConfig, OmegaConf

from pipeline.data.domain import Domain
from pipeline.data.images.transforms import reprepare
from pipeline.data.store import load_domain
from pipeline.errors import ConfigError
from pipeline.metrics.candidates import (
    Candidate,
    budget_scores,
    domain_distance,
    mean_scores,
    rank_agreement,
)
from pipeline.models.grouped import GroupedNet
from pipeline.models.predict import predict_logits
from pipeline.models.weights import load_model
from pipeline.report.candidates import ranking_markdown
from pipeline.tracking.lineage import stage_tags
from pipeline.transfer.arms import ModelFactory
from pipeline.transfer.source import SourceModel
from pipeline.transfer.train import tensors, train_arms
from stages import _build as build
from stages._files import Layout, write_json
from stages._shell import run_stage, stage_output, use_tracking

STAGE = "rank"
TIMM = "pipeline.models.timm_backbone.timm_backbone"


def load_candidate(
    spec: DictConfig, key: str
) -> tuple[SourceModel, GroupedNet, ModelFactory, dict]:
    """A candidate as a source model and network (weights with its own head), a factory for
    fresh target networks of its architecture, and the input it expects (empty: as prepared)."""
    from pipeline.models.timm_backbone import locate_weights, pretrained_input

    if spec.get("folder"):  # a Graftlab source model (a pretrain stage's model/ folder)
        source = SourceModel.load(Path(spec.folder))
        node, where = source.spec["model"], f"{key}.folder"
        net = None
    elif spec.get("model"):
        node, where = OmegaConf.to_container(spec.model, resolve=True), f"{key}.model"
        if node.get("weights"):  # named by this key before the backbone names its own
            pin = node.get("weights_sha256")
            locate_weights(node["weights"], pin, f"{where}.weights", digest=pin is not None)
        net = build.instantiate({}, where, node, num_classes=None)
        path = Path(node.get("weights") or where)
        source = SourceModel(path, net.state_dict(), {"num_classes": net.num_classes}, {})
    else:
        raise ConfigError(key, spec, "{name: ..., model: {_target_: ...}} or {name, folder}")
    skip = {"load_weights": False} if "weights" in node else {}
    factory = lambda n: build.instantiate({}, where, node, num_classes=n, **skip)  # noqa: E731
    net = net or load_model(factory, source.path, source.spec["num_classes"])
    shape, norm = source.spec.get("input_shape"), source.spec.get("normalize")
    if node.get("_target_") == TIMM and spec.get("model"):
        wanted = pretrained_input(node["arch"], node.get("weights"), node.get("create_args"))
    elif shape and norm:
        wanted = {"channels": shape[0], "size": shape[1], **norm}
    else:
        wanted = {}
    return source, net.eval(), factory, wanted


def score(cfg: DictConfig, i: int, target: Domain, source_data: Domain) -> Candidate:
    spec, key, r = cfg.source.candidates[i], f"source.candidates.{i}", cfg.source
    if not spec.get("name"):
        raise ConfigError(f"{key}.name", spec.get("name"), "a name for the candidate")
    source, net, factory, wanted = load_candidate(spec, key)
    if wanted:
        args = (wanted["channels"], wanted["size"], wanted["mean"], wanted["std"])
        target, source_data = reprepare(target, *args), reprepare(source_data, *args)
    task = build.target_task(cfg, target)  # the label budget: train and validation per seed
    seeds = build.transfer_seeds(cfg)
    budgets = {s: task.labelled(s) for s in seeds}  # the labelled budget: nothing else is read
    per_seed = budget_scores(net, budgets)
    c = Candidate(str(spec.name), mean_scores(per_seed), seed_scores=per_seed)
    c.scores["proxy_a_distance"] = domain_distance(
        net, source_data.splits["val"].x, target.splits["train"].x, r.max_samples, cfg.seed
    )
    if r.arm:
        x, y = tensors(target.splits["test"])
        arms = [build.arm(cfg, r.arm, net.num_groups, seed) for seed in seeds]
        kw = {"trainer_kwargs": build.trainer_kwargs(cfg, False), "vectorise": build.ensembles(cfg)}
        for result in train_arms(arms, task, factory, source, **kw):  # the seeds as one ensemble
            logits = predict_logits(result.model, x)
            c.realised.append(float((logits.argmax(1) == y).float().mean()))
    return c


def run(cfg: DictConfig) -> dict:
    paths, r = Layout.of(cfg), cfg.source
    if not r.candidates:
        with stage_output(Path(cfg.paths.rank)) as out:
            write_json(out / "ranking.json", {"candidates": []})
            (out / "ranking.md").write_text("# Candidate sources\n\nNone configured.\n")
            write_json(out / "metrics.json", {"candidates": 0})
        print("rank: no candidate sources (source.candidates is empty): nothing to rank")
        return {"candidates": 0}
    with stage_output(Path(cfg.paths.rank)) as out:
        target, source_data = (load_domain(paths.domain(x)) for x in ("target", "source"))
        _, experiment_id = use_tracking(cfg)
        tags = stage_tags(STAGE, ".")
        with mlflow.start_run(run_name=STAGE, experiment_id=experiment_id, tags=tags):
            ranked = [score(cfg, i, target, source_data) for i in range(len(r.candidates))]
            tau = rank_agreement(ranked, float(cfg.evaluate.confidence), cfg.seed) if r.arm else {}
            metrics = {"candidates": len(ranked)}
            for k, v in tau.items():
                metrics |= {f"tau.{k}": v.tau, f"tau.{k}.low": v.low, f"tau.{k}.high": v.high}
            for c in ranked:
                metrics |= {f"{c.name}.{k}": v for k, v in c.scores.items()}
                if c.realised:
                    metrics[f"{c.name}.test_acc"] = c.accuracy
            mlflow.log_metrics({k: v for k, v in metrics.items() if v == v})  # not NaN
            rows = [{"name": c.name, "scores": c.scores, "realised": c.realised} for c in ranked]
            tau_rows = {k: dataclasses.asdict(v) for k, v in tau.items()}
            write_json(out / "ranking.json", {"candidates": rows, "tau": tau_rows})
            write_json(out / "metrics.json", metrics)
            text = ranking_markdown(
                ranked, tau, int(cfg.data.labels_per_class), cfg.evaluate.confidence
            )
            (out / "ranking.md").write_text(text)
            mlflow.log_text(text, "ranking.md")
    print(text)
    return metrics


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
