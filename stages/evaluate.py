"""evaluate: score every arm on the target test split and decide whether transfer helped.

Reads params: seed, data.labels_per_class, model, transfer, evaluate, trainer;
outputs/prepare/{source,target}, outputs/pretrain/model, outputs/tune/best.yaml,
outputs/transfer/{models,history.csv}.
Writes outputs/evaluate/metrics.json (flat keys for `dvc metrics show`: transfer.test_acc,
scratch.test_acc, transfer_gain, negative_transfer, ...), outputs/evaluate/report.md with its PNG
figures, and outputs/evaluate/plots/*.csv (for `dvc plots show`). Everything is logged to one
MLflow evaluation run linked to the models it scored.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow.entities import LoggedModelInput
from omegaconf import DictConfig

from pipeline.data.domain import Domain
from pipeline.data.store import load_domain
from pipeline.metrics.classification import classification_metrics
from pipeline.metrics.efficiency import compute_saved, labels_saved, labels_to_reach
from pipeline.metrics.intervals import mean_interval
from pipeline.metrics.ntg import negative_transfer_gap
from pipeline.metrics.ranking import kendall_tau
from pipeline.metrics.suite import READS, transferability_scores
from pipeline.models.grouped import GroupedNet
from pipeline.models.predict import predict_logits
from pipeline.models.weights import load_into, load_state_dict
from pipeline.report import plots
from pipeline.report.markdown import render_report, verdict_paragraph
from pipeline.tracking.lineage import stage_tags
from pipeline.transfer.arms import Arm
from pipeline.transfer.prefix_cache import PrefixCache
from stages import _build as build
from stages._shell import OUTPUTS, read_json, run_stage, stage_output, use_tracking, write_json
from stages._target import Source, to_tensors, train_arm, tuned_config

STAGE = "evaluate"


def load_model(cfg: DictConfig, path: Path, num_classes: int) -> GroupedNet:
    model = build.model_factory(cfg)(num_classes)
    load_into(model, load_state_dict(path), path)
    return model.eval()


def score_runs(cfg: DictConfig, index: dict, target: Domain) -> list[dict]:
    """Test metrics of every (arm, seed) model the transfer stage trained."""
    x, y = to_tensors(target, "test")
    scored = []
    for row in index["runs"]:
        model = load_model(cfg, OUTPUTS / "transfer" / row["path"], target.num_classes)
        m = classification_metrics(predict_logits(model, x), y, target.num_classes)
        scored.append({**row, **m})
    return scored


def summarise_arms(scored: list[dict], confidence: float) -> dict[str, dict]:
    arms: dict[str, dict] = {}
    for name in dict.fromkeys(r["arm"] for r in scored):
        rows = sorted((r for r in scored if r["arm"] == name), key=lambda r: r["seed"])
        mean, low, high = mean_interval([r["acc"] for r in rows], confidence)
        arms[name] = {
            "mean": mean,
            "low": low,
            "high": high,
            "macro_f1": float(np.mean([r["macro_f1"] for r in rows])),
            "values": [r["acc"] for r in rows],
            "seeds": [r["seed"] for r in rows],
            "init_groups": rows[0]["init_groups"],
            "freeze_groups": rows[0]["freeze_groups"],
        }
    return arms


def gaps(arms: dict[str, dict], baseline: str, confidence: float) -> dict[str, dict]:
    """Negative transfer gap of every arm against the baseline, paired by seed."""
    base = arms[baseline]["values"]
    out = {}
    for name, a in arms.items():
        if name == baseline:
            continue
        r = negative_transfer_gap([1 - v for v in a["values"]], [1 - v for v in base], confidence)
        out[name] = {
            "mean": r.mean,
            "low": r.ci_low,
            "high": r.ci_high,
            "verdict": r.verdict,
            "gaps": list(r.gaps),
        }
    return out


def read_history(path: Path) -> list[dict]:
    with path.open() as f:
        return [
            {k: (v if k == "arm" else float(v)) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def mean_compute_saved(history: list[dict], primary: str, baseline: str) -> dict:
    per_seed = []
    for seed in sorted({r["seed"] for r in history}):
        t = [r for r in history if r["arm"] == primary and r["seed"] == seed]
        s = [r for r in history if r["arm"] == baseline and r["seed"] == seed]
        if t and s:
            per_seed.append(compute_saved(t, s))
    if not per_seed:
        return {}
    return {
        k: float(np.nanmean([p[k] for p in per_seed]))
        if any(not math.isnan(p[k]) for p in per_seed)
        else math.nan
        for k in per_seed[0]
    }


class CurveTrainer:
    """Trains the extra models behind the curves (seeded like the transfer stage's arms)."""

    def __init__(self, cfg: DictConfig, target: Domain, source: Source) -> None:
        self.cfg, self.target, self.source = cfg, target, source
        self.groups = build.num_groups(build.model_factory(cfg))
        self.x_test, self.y_test = to_tensors(target, "test")
        self.cache = PrefixCache()

    def test_acc(self, arm: Arm, labels: int) -> float:
        result = train_arm(self.cfg, arm, self.target, self.source, labels, cache=self.cache)
        logits = predict_logits(result.model, self.x_test)
        return float((logits.argmax(1) == self.y_test).float().mean())

    def variant(self, name: str, seed: int, init_groups: int | None = None, **changes: int) -> Arm:
        """Arm ``name`` for ``seed`` with some settings changed (e.g. copied/frozen depth)."""
        base = build.arm(self.cfg, name, self.groups, seed)
        settings = dataclasses.replace(base.settings, **changes)
        return Arm(name, base.init_groups if init_groups is None else init_groups, settings)

    def mean_acc(self, name: str, labels: int, seeds: list[int], **changes: int) -> float:
        return float(
            np.mean([self.test_acc(self.variant(name, s, **changes), labels) for s in seeds])
        )


def freeze_depth_curve(trainer: CurveTrainer, labels: int, seeds: list[int]) -> list[dict]:
    """Yosinski et al.'s AnB (copy k, frozen) and AnB+ (copy k, fine-tune all), k = 0..G.

    Every point trains with the baseline (scratch) arm's optimiser settings, so k = 0 is exactly
    the baseline and only the copied/frozen depth changes along the curve."""
    base = trainer.cfg.transfer.baseline
    rows = []
    for k in range(trainer.groups + 1):
        frozen = trainer.mean_acc(base, labels, seeds, init_groups=k, freeze_groups=k)
        tuned = (
            frozen
            if k == 0
            else trainer.mean_acc(base, labels, seeds, init_groups=k, freeze_groups=0)
        )
        rows.append({"k": k, "frozen": frozen, "finetuned": tuned})
    return rows


def label_curve(
    trainer: CurveTrainer, cfg: DictConfig, budgets: list[int], seeds: list[int]
) -> list[dict]:
    smallest = int(np.bincount(trainer.target.splits["train"].y).min())
    rows = []
    for n in sorted({min(int(b), smallest) for b in budgets}):
        rows.append(
            {
                "labels_per_class": n,
                "transfer": trainer.mean_acc(cfg.transfer.primary, n, seeds),
                "scratch": trainer.mean_acc(cfg.transfer.baseline, n, seeds),
            }
        )
    return rows


def compute_scores(
    cfg: DictConfig,
    source: Source,
    target: Domain,
    source_domain: Domain,
    depth_acc: list[dict] | None,
) -> tuple[dict, dict]:
    """Transferability/domain scores of the source model, and their Kendall tau over depths."""
    ev = cfg.evaluate.scores
    model = load_model(cfg, source.path, source.spec["num_classes"])
    x, y = to_tensors(target, "train")
    rng = np.random.default_rng(cfg.seed)
    xs = source_domain.splits["val"].x
    xs = torch.from_numpy(xs[rng.permutation(len(xs))[: ev.max_samples]])
    xt = x[: ev.max_samples]
    probs = torch.softmax(predict_logits(model, x), dim=1).double().numpy()
    feats = predict_logits(model, x, features=True).double().numpy()
    scores = transferability_scores(
        probs,
        feats,
        y.numpy(),
        predict_logits(model, xs, features=True).double().numpy()[: len(xt)],
        permutations=ev.mmd_permutations,
        seed=cfg.seed,
    )
    ranking = {}
    if depth_acc:
        from pipeline.metrics.hscore import h_score
        from pipeline.metrics.logme import logme

        with torch.inference_mode():
            per_k = [
                model.pool(model.forward_groups(x, 0, k)).double().numpy()
                for k in range(1, model.num_groups + 1)
            ]
        realised = [r["frozen"] for r in depth_acc[1:]]
        ranking = {
            "logme": kendall_tau([logme(f, y.numpy()) for f in per_k], realised),
            "h_score": kendall_tau([h_score(f, y.numpy()) for f in per_k], realised),
        }
    return {k: {"value": float(v), "reads": READS[k]} for k, v in scores.items()}, ranking


def flat_metrics(s: dict) -> dict:
    """The keys `dvc metrics show` / `dvc exp show` display."""
    p, b = s["primary"], s["baseline"]
    m = {
        "transfer.test_acc": s["arms"][p]["mean"],
        "scratch.test_acc": s["arms"][b]["mean"],
        "transfer_gain": s["gain"]["mean"],
        "transfer_gain_ci_low": s["gain"]["low"],
        "transfer_gain_ci_high": s["gain"]["high"],
        "ntg": s["ntg"][p]["mean"],
        "negative_transfer": s["verdict"] == "negative",
        "inconclusive": s["verdict"] == "inconclusive",
    }
    for name, a in s["arms"].items():
        m[f"arms.{name}.test_acc"] = a["mean"]
        m[f"arms.{name}.macro_f1"] = a["macro_f1"]
    for k, v in (s.get("scores") or {}).items():
        m[f"scores.{k}"] = v["value"]
    if s.get("labels_saved"):
        m["labels_saved"] = s["labels_saved"]["saved"]
        m["scratch_equivalent_labels"] = s["labels_saved"]["scratch_equivalent"]
    if s.get("compute_saved"):
        m["epochs_saved"] = s["compute_saved"]["epochs_saved"]
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in m.items()}


def write_plot_data(folder: Path, s: dict, confusion: list[list[int]]) -> None:
    folder.mkdir()
    tables = {
        "arms.csv": [{"arm": n, "test_acc": a["mean"]} for n, a in s["arms"].items()],
        "freeze_depth.csv": s.get("freeze_depth") or [],
        "label_efficiency.csv": s.get("label_efficiency") or [],
        "confusion.csv": [
            {"actual": i, "predicted": j}
            for i, row in enumerate(confusion)
            for j, n in enumerate(row)
            for _ in range(n)
        ],
    }
    for name, rows in tables.items():
        if rows:
            with (folder / name).open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)


def run(cfg: DictConfig) -> dict:
    target = load_domain(OUTPUTS / "prepare" / "target")
    source_domain = load_domain(OUTPUTS / "prepare" / "source")
    source = Source(OUTPUTS / "pretrain" / "model")
    index = read_json(OUTPUTS / "transfer" / "models" / "index.json")
    cfg, best = tuned_config(cfg)
    primary, baseline = index["primary"], index["baseline"]
    conf = float(cfg.evaluate.confidence)
    _, experiment_id = use_tracking(cfg)
    tags = {
        "graftlab.stage": STAGE,
        "graftlab.transfer_run_id": index["run_id"],
        "graftlab.source_model_id": source.ids["model_id"],
    }
    with (
        mlflow.start_run(
            run_name=STAGE, experiment_id=experiment_id, tags={**stage_tags(STAGE, "."), **tags}
        ) as run_,
        stage_output(STAGE) as out,
    ):
        report = out / "report"
        report.mkdir()
        scored = score_runs(cfg, index, target)
        for r in scored:
            mlflow.log_input(model=LoggedModelInput(r["model_id"]))
            mlflow.log_metrics(
                {
                    f"{r['arm']}.seed{r['seed']}.test_acc": r["acc"],
                    f"{r['arm']}.seed{r['seed']}.test_macro_f1": r["macro_f1"],
                },
                model_id=r["model_id"],
            )
        arms = summarise_arms(scored, conf)
        ntg = gaps(arms, baseline, conf)
        mean_gain, low, high = mean_interval(
            [t - s for t, s in zip(arms[primary]["values"], arms[baseline]["values"], strict=True)],
            conf,
        )
        summary = {
            "source": source.spec.get("dataset", "source"),
            "target": target.name,
            "labels_per_class": index["labels_per_class"],
            "seeds": len(arms[primary]["values"]),
            "confidence": conf,
            "primary": primary,
            "baseline": baseline,
            "arms": arms,
            "ntg": ntg,
            "verdict": ntg[primary]["verdict"],
            "gain": {"mean": mean_gain, "low": low, "high": high},
            "tuned_freeze_groups": (best.get("overrides") or {}).get("transfer.freeze_groups"),
            "compute_saved": mean_compute_saved(
                read_history(OUTPUTS / "transfer" / "history.csv"), primary, baseline
            ),
        }
        depth, labels_cfg = cfg.evaluate.curves.freeze_depth, cfg.evaluate.curves.label_efficiency
        all_seeds = build.transfer_seeds(cfg)
        trainer = CurveTrainer(cfg, target, source)
        if depth.enabled:
            rows = freeze_depth_curve(
                trainer, index["labels_per_class"], all_seeds[: int(depth.seeds)]
            )
            summary["freeze_depth"] = rows
            summary["best_depth"] = max(rows[1:], key=lambda r: r["frozen"])["k"]
            for r in rows:
                mlflow.log_metrics(
                    {
                        "curve.freeze_depth.frozen": r["frozen"],
                        "curve.freeze_depth.finetuned": r["finetuned"],
                    },
                    step=r["k"],
                )
            plots.plot_freeze_depth(rows, arms[baseline]["mean"], report / "freeze_depth.png")
        if labels_cfg.labels_per_class:
            rows = label_curve(
                trainer, cfg, list(labels_cfg.labels_per_class), all_seeds[: int(labels_cfg.seeds)]
            )
            summary["label_efficiency"] = rows
            budgets, scratch = [r["labels_per_class"] for r in rows], [r["scratch"] for r in rows]
            summary["labels_saved"] = labels_saved(budgets, [r["transfer"] for r in rows], scratch)
            summary["labels_saved"]["scratch_equivalent"] = labels_to_reach(
                budgets, scratch, arms[primary]["mean"]
            )
            for r in rows:
                mlflow.log_metrics(
                    {"curve.labels.transfer": r["transfer"], "curve.labels.scratch": r["scratch"]},
                    step=r["labels_per_class"],
                )
            plots.plot_label_efficiency(rows, report / "label_efficiency.png")
        if cfg.evaluate.scores.enabled:
            summary["scores"], summary["ranking"] = compute_scores(
                cfg, source, target, source_domain, summary.get("freeze_depth")
            )
        first = next(r for r in scored if r["arm"] == primary)
        plots.plot_arms(arms, report / "arms.png")
        plots.plot_confusion(first["confusion"], target.classes, report / "confusion.png")
        write_plot_data(out / "plots", summary, first["confusion"])
        metrics = flat_metrics(summary)
        (report / "report.md").write_text(render_report(summary))
        write_json(report / "summary.json", summary)
        write_json(report / "mlflow.json", {"run_id": run_.info.run_id})
        write_json(out / "metrics.json", metrics)
        mlflow.set_tag("graftlab.verdict", summary["verdict"])
        mlflow.log_metrics(
            {k: float(v) for k, v in metrics.items() if v is not None}, model_id=first["model_id"]
        )
        mlflow.log_artifacts(str(report), artifact_path="report")
    print(verdict_paragraph(summary))
    return metrics


def main() -> None:
    run_stage(STAGE, run)


if __name__ == "__main__":
    main()
