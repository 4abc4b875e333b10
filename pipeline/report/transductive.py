"""The transductive (domain adaptation) report: typed result in, markdown and JSON out.

A paper-style table (source only / each method / oracle, test accuracy with intervals over
paired seeds), the negative-transfer verdict of every method against source only (Wang et al.,
CVPR 2019), what each unsupervised validator picks against what the test labels would pick, the
share of the source-only-to-oracle gap closed by the model chosen without target labels, and the
domain distances (proxy A-distance, MMD^2) of the features before and after adaptation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.metrics.intervals import Interval
from pipeline.metrics.ntg import NTGResult, negative_transfer_gap
from pipeline.selection.picks import Candidate, ValidatorResult, gap_closed, rank_validators


@dataclass
class TransductiveEvaluation:
    """Everything the transductive report shows.

    Attributes:
        source: Source dataset name.
        target: Target dataset name.
        confidence: Interval level.
        seeds: The paired seeds.
        baseline: The source-only arm.
        oracle: The target-trained reference arm.
        validator: The validator that chose (stopping, method, tuning).
        methods: Test accuracy per arm (baseline, methods, oracle), over seeds.
        ntg: Negative transfer gap of every method against the baseline.
        validators: Every validator's picks over all candidates.
        chosen: The chosen validator's pick per seed: ``(arm, epoch, test accuracy)``.
        gap_closed: Share of the baseline-to-oracle gap closed by the chosen models.
        domain: ``{"source model" or arm: {"pad": ..., "mmd2": ...}}`` (means over seeds).
        candidates: Number of candidate models (arm x seed x epoch).
    """

    source: str
    target: str
    confidence: float
    seeds: tuple[int, ...]
    baseline: str
    oracle: str
    validator: str
    methods: dict[str, Interval]
    ntg: dict[str, NTGResult]
    validators: dict[str, ValidatorResult]
    chosen: list[tuple[str, int, float]]
    gap_closed: Interval
    domain: dict[str, dict[str, float]] = field(default_factory=dict)
    candidates: int = 0

    def flat_metrics(self) -> dict[str, float | str | None]:
        """Flat keys for ``dvc metrics show`` and MLflow."""
        m: dict[str, float | str | None] = {}
        for arm, acc in self.methods.items():
            m[f"{arm}.test_acc"] = acc.mean
        for arm, g in self.ntg.items():
            m[f"{arm}.ntg"] = g.mean
            m[f"{arm}.negative_transfer"] = g.verdict
        for name, v in self.validators.items():
            m[f"validator.{name}.picked_acc"] = v.picked.mean
            m[f"validator.{name}.regret"] = v.regret.mean
            m[f"validator.{name}.spearman"] = _num(v.spearman)
        m["chosen.test_acc"] = mean([acc for _, _, acc in self.chosen])
        m["gap_closed"] = _num(self.gap_closed.mean)
        m["gap_closed_low"] = _num(self.gap_closed.low)
        m["gap_closed_high"] = _num(self.gap_closed.high)
        for who, scores in self.domain.items():
            for k, v in scores.items():
                m[f"domain.{who.replace(' ', '_')}.{k}"] = v
        return m

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))


def assess(
    acc: Mapping[str, Sequence[float]],
    cands: Sequence[Candidate],
    *,
    baseline: str,
    oracle: str,
    validator: str,
    validators: Sequence[str],
    confidence: float,
    **names: str,
) -> TransductiveEvaluation:
    """The evaluation from test accuracies per arm (in seed order; ``baseline`` and ``oracle``
    among them) and the scored candidates; ``names``: ``source`` and ``target`` dataset names."""
    order = [baseline, *(a for a in acc if a not in (baseline, oracle)), oracle]
    seeds = tuple(sorted({c.seed for c in cands}))
    picks = rank_validators(cands, validators, confidence)
    by = {(c.arm, c.seed, c.epoch): c.acc for c in cands}
    chosen = [
        (arm, epoch, by[(arm, s, epoch)])
        for s, (arm, epoch) in zip(seeds, picks[validator].picks, strict=True)
    ]
    errors = {a: [1 - v for v in acc[a]] for a in order}
    return TransductiveEvaluation(
        source=names.get("source", "source"),
        target=names.get("target", "target"),
        confidence=confidence,
        seeds=seeds,
        baseline=baseline,
        oracle=oracle,
        validator=validator,
        methods={a: Interval.of(acc[a], confidence) for a in order},
        ntg={
            a: negative_transfer_gap(errors[a], errors[baseline], confidence)
            for a in order
            if a not in (baseline, oracle)
        },
        validators=picks,
        chosen=chosen,
        gap_closed=gap_closed([c[2] for c in chosen], acc[baseline], acc[oracle], confidence),
        candidates=len(cands),
    )


def mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _jsonable(obj: object) -> object:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.1f}"


def _interval(iv: Interval, scale: float = 100.0, sign: bool = False) -> str:
    if not math.isfinite(iv.mean):
        return "n/a"
    fmt = "+.1f" if sign else ".1f"
    mid = f"{scale * iv.mean:{fmt}}"
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return mid
    return f"{mid} [{scale * iv.low:{fmt}}, {scale * iv.high:{fmt}}]"


def render(ev: TransductiveEvaluation) -> str:
    """The report as markdown; its first paragraph is the verdict."""
    level = f"{100 * ev.confidence:.0f}%"
    n = len(ev.seeds)
    picks = ", ".join(f"{arm} (epoch {ep}, {_pct(acc)}%)" for arm, ep, acc in ev.chosen)
    gap = ev.gap_closed
    lines = [
        f"# Transductive transfer: {ev.source} -> {ev.target}",
        "",
        f"Chosen without target labels by `{ev.validator}` (method and stopping epoch, per seed): "
        f"{picks}. It closes **{_interval(gap)}%** ({level} interval over {n} seeds) of the gap "
        f"between {ev.baseline} ({_pct(ev.methods[ev.baseline].mean)}%) and the target-trained "
        f"{ev.oracle} ({_pct(ev.methods[ev.oracle].mean)}%).",
        "",
        "No target label was read before this stage: hyperparameters, stopping epochs and the "
        "method were chosen by unsupervised validators; test labels are scored here only. The "
        f"{ev.oracle} row is a reference line (trained on target labels), not a method.",
        "",
        f"## Methods (target test accuracy %, mean [{level} interval] over {n} paired seeds)",
        "",
        "| method | test acc | vs source only (NTG, error points) | verdict |",
        "|---|---|---|---|",
    ]
    for arm, acc in ev.methods.items():
        g = ev.ntg.get(arm)
        ntg = _interval(Interval(g.mean, g.ci_low, g.ci_high), sign=True) if g else ""
        verdict = (g.verdict + " transfer") if g else ("reference" if arm == ev.oracle else "")
        lines.append(f"| {arm} | {_interval(acc)} | {ntg} | {verdict} |")
    lines += [
        "",
        f"NTG = test error of the method minus that of {ev.baseline}, paired by seed (Wang et "
        "al., CVPR 2019): negative transfer when the whole interval lies above 0.",
        "",
        f"## Model selection without target labels ({ev.candidates} candidates: every arm, seed "
        "and epoch)",
        "",
        "| validator | picked model: test acc | oracle-picked: test acc | regret (points) | "
        "Spearman rho (score vs test acc) |",
        "|---|---|---|---|---|",
    ]
    for name, v in ev.validators.items():
        mark = " (chooses)" if name == ev.validator else ""
        rho = "n/a" if not math.isfinite(v.spearman) else f"{v.spearman:+.2f}"
        lines.append(
            f"| {name}{mark} | {_interval(v.picked)} | {_interval(v.best)} | "
            f"{_interval(v.regret)} | {rho} |"
        )
    lines += [
        "",
        "The oracle pick is the candidate with the best *test* accuracy: what selection with "
        "target labels would get. Higher validator scores are better for every validator.",
    ]
    if ev.domain:
        lines += [
            "",
            "## Domain distance of the features (source val vs target test; lower = closer)",
            "",
            "| model | proxy A-distance | MMD^2 |",
            "|---|---|---|",
        ]
        for who, s in ev.domain.items():
            lines.append(f"| {who} | {s['pad']:.3f} | {s['mmd2']:.4f} |")
    return "\n".join(lines) + "\n"


def write(ev: TransductiveEvaluation, folder: Path) -> None:
    """``report.md`` and ``summary.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(render(ev))
    (folder / "summary.json").write_text(json.dumps(ev.to_dict(), indent=2, sort_keys=True) + "\n")
