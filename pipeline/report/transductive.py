"""The transductive (domain adaptation) report: typed result in; headline metrics, markdown, HTML
with its figures inside, and JSON out.

A paper-style table (source only / each method / oracle, test accuracy with intervals over
paired seeds), the negative-transfer verdict of every method against source only (Wang et al.,
CVPR 2019), what each unsupervised validator picks against what the test labels would pick, the
share of the source-only-to-oracle gap closed by the model chosen without target labels, and the
domain distances (proxy A-distance, MMD^2) of the features before and after adaptation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.jsonfile import write_json
from pipeline.metrics.intervals import ACCURACY, Interval
from pipeline.metrics.ntg import NTGResult, negative_transfer_gap
from pipeline.report.tables import confusion_rows, unmeasured_depth, unmeasured_labels
from pipeline.selection.picks import Candidate, ValidatorResult, gap_closed, rank_validators

# What `dvc metrics show` leads with (metrics.json): how much of the source-only-to-oracle gap the
# model chosen without target labels closes, its accuracy, and the two reference accuracies. Every
# other number goes to details.json (pipeline/report/headline.py).
HEADLINE = (
    "gap_closed",
    "gap_closed_ci_low",
    "gap_closed_ci_high",
    "chosen.test_acc",
    "chosen.test_acc_ci_low",
    "chosen.test_acc_ci_high",
    "chosen.regret",
    "source_only.test_acc",
    "oracle.test_acc",
    "negative_transfer",
    "inconclusive",
    "seeds",
)


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

    @property
    def chosen_acc(self) -> Interval:
        """Test accuracy of the models the chosen validator picked, over seeds."""
        return Interval.of([acc for _, _, acc in self.chosen], self.confidence, ACCURACY)

    @property
    def verdict(self) -> str:
        """``positive`` / ``negative`` when the interval of the gap closed by the chosen models
        lies wholly above / below 0 (better / worse than source only), else ``inconclusive``."""
        g = self.gap_closed
        if math.isfinite(g.low) and g.low > 0:
            return "positive"
        if math.isfinite(g.high) and g.high < 0:
            return "negative"
        return "inconclusive"

    def flat_metrics(self) -> dict[str, float | bool | None]:
        """Flat keys for ``dvc metrics show`` and MLflow: numbers and booleans only, non-finite
        values as None; the :data:`HEADLINE` keys first."""
        chosen, gap = self.chosen_acc, self.gap_closed
        m: dict[str, float | bool | None] = {
            "gap_closed": gap.mean,
            "gap_closed_ci_low": gap.low,
            "gap_closed_ci_high": gap.high,
            "chosen.test_acc": chosen.mean,
            "chosen.test_acc_ci_low": chosen.low,
            "chosen.test_acc_ci_high": chosen.high,
            "chosen.regret": self.validators[self.validator].regret.mean,
            # fixed key names (not the configured arm names) so `dvc exp show` columns line up
            "source_only.test_acc": self.methods[self.baseline].mean,
            "oracle.test_acc": self.methods[self.oracle].mean,
            "negative_transfer": self.verdict == "negative",
            "inconclusive": self.verdict == "inconclusive",
            "seeds": len(self.seeds),
        }
        for arm, acc in self.methods.items():
            m[f"arms.{arm}.test_acc"] = acc.mean
            m[f"arms.{arm}.test_acc_ci_low"] = acc.low
            m[f"arms.{arm}.test_acc_ci_high"] = acc.high
        # interval ends named as the other intervals here (and the inductive transfer_gain_ci_*):
        # the NTG interval decides each arm's verdict, so `dvc metrics show` can say why
        for arm, g in self.ntg.items():
            m[f"arms.{arm}.ntg"] = g.mean
            m[f"arms.{arm}.ntg_ci_low"] = g.ci_low
            m[f"arms.{arm}.ntg_ci_high"] = g.ci_high
            m[f"arms.{arm}.negative_transfer"] = g.verdict == "negative"
            m[f"arms.{arm}.inconclusive"] = g.verdict == "inconclusive"
        for name, v in self.validators.items():
            for key, iv in (("picked_acc", v.picked), ("regret", v.regret)):
                m[f"validator.{name}.{key}"] = iv.mean
                m[f"validator.{name}.{key}_ci_low"] = iv.low
                m[f"validator.{name}.{key}_ci_high"] = iv.high
            m[f"validator.{name}.spearman"] = v.spearman
        for who, scores in self.domain.items():
            for k, v in scores.items():
                m[f"domain.{who.replace(' ', '_')}.{k}"] = v
        m["candidates"] = self.candidates
        return {k: _num(v) if isinstance(v, float) else v for k, v in m.items()}

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
        methods={a: Interval.of(acc[a], confidence, ACCURACY) for a in order},
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


def _num(x: float) -> float | None:  # JSON has no NaN/inf: null, as the inductive metrics
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


def verdict_paragraph(ev: TransductiveEvaluation, bold: bool = True) -> str:
    """The report's opening paragraph (also the console's and MLflow's summary)."""
    level = f"{100 * ev.confidence:.0f}%"
    picks = ", ".join(f"{arm} (epoch {ep}, {_pct(acc)}%)" for arm, ep, acc in ev.chosen)
    mark = "**" if bold else ""
    return (
        f"Chosen without target labels by `{ev.validator}` (method and stopping epoch, per seed): "
        f"{picks}; target test accuracy {_interval(ev.chosen_acc)}%. It closes "
        f"{mark}{_interval(ev.gap_closed)}%{mark} ({level} interval over {len(ev.seeds)} seeds) "
        f"of the gap between {ev.baseline} ({_pct(ev.methods[ev.baseline].mean)}%) and the "
        f"target-trained {ev.oracle} ({_pct(ev.methods[ev.oracle].mean)}%): "
        f"{VERDICT_TEXT[ev.verdict]}."
    )


VERDICT_TEXT = {
    "positive": "adaptation helped",
    "negative": "adaptation hurt (worse than source only)",
    "inconclusive": "not distinguishable from source only at this many seeds",
}
FIGURES = {"methods": "methods.png", "validators": "validators.png"}


def render(ev: TransductiveEvaluation) -> str:
    """The report as markdown; its first paragraph is the verdict."""
    level = f"{100 * ev.confidence:.0f}%"
    n = len(ev.seeds)
    lines = [
        f"# Transductive transfer: {ev.source} -> {ev.target}",
        "",
        verdict_paragraph(ev),
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
        f"![Target test accuracy per method, mean and {level} interval]({FIGURES['methods']})",
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
        "target labels would get. Higher validator scores are better for every validator. "
        "Regret is never negative, so its interval is cut at 0 where the t-interval over seeds "
        "reaches below (accuracies likewise stay within 0..100%).",
        "",
        f"![Test accuracy of the model each validator picks vs the oracle pick]"
        f"({FIGURES['validators']})",
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


def arms_table(ev: TransductiveEvaluation) -> list[dict]:
    """``plots/arms.csv``: test accuracy per arm with its interval bounds (as the inductive)."""
    return [
        {"arm": a, "test_acc": iv.mean, "test_acc_low": iv.low, "test_acc_high": iv.high}
        for a, iv in ev.methods.items()
    ]


def plot_tables(
    ev: TransductiveEvaluation, confusion: list[list[int]], classes: Sequence[str], k: int
) -> dict[str, list[dict]]:
    """The tables dvc.yaml's plots read, by file name (DVC has no per-setting plots, and a missing
    file fails `dvc plots show`): ``arms.csv``; ``confusion.csv``, the primary arm's first seed on
    the target test split (``confusion``, rows: true class), as inductively; the inductive
    freeze-depth and label-efficiency curves are not measured here, so their tables hold one
    point of what this setting trained at (``k`` frozen groups, no target label) and no values:
    their plots are drawn empty rather than failing or showing another number."""
    return {
        "arms.csv": arms_table(ev),
        "confusion.csv": confusion_rows(confusion, classes),
        "freeze_depth.csv": unmeasured_depth(k),
        "label_efficiency.csv": unmeasured_labels(0),
    }


def _bars(ax, names: list[str], ivs: list[Interval], offset: float, width: float, **kw) -> None:
    """Bars of interval means with error bars (none where the interval is not finite)."""
    means = [iv.mean for iv in ivs]
    err = [
        [m - iv.low if math.isfinite(iv.low) else 0 for m, iv in zip(means, ivs, strict=True)],
        [iv.high - m if math.isfinite(iv.high) else 0 for m, iv in zip(means, ivs, strict=True)],
    ]
    ax.bar([i + offset for i in range(len(names))], means, width, yerr=err, capsize=3, **kw)


def plot(ev: TransductiveEvaluation, folder: Path) -> None:
    """The report's figures (PNG, matplotlib's Agg backend via :mod:`pipeline.report.plots`)."""
    from pipeline.report.plots import plt  # imported there with the Agg backend selected

    def _save(fig, path: Path) -> None:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    level, n = round(100 * ev.confidence), len(ev.seeds)
    names = list(ev.methods)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    colors = ["tab:gray" if a in (ev.baseline, ev.oracle) else "tab:blue" for a in names]
    _bars(ax, names, [ev.methods[a] for a in names], 0, 0.8, color=colors)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("target test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"Methods: mean and {level}% CI over {n} paired seeds (grey: references)")
    _save(fig, folder / FIGURES["methods"])

    names = list(ev.validators)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    _bars(ax, names, [ev.validators[v].picked for v in names], -0.2, 0.4, label="validator pick")
    _bars(ax, names, [ev.validators[v].best for v in names], 0.2, 0.4, label="oracle pick")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("target test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"Selection without target labels ({ev.candidates} candidates)")
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, folder / FIGURES["validators"])


def write(ev: TransductiveEvaluation, folder: Path) -> None:
    """``report.md``, its PNG figures, ``report.html`` (both in one file) and ``summary.json``
    into ``folder``, like the inductive report (:func:`pipeline.report.write_report`)."""
    from pipeline.report.html import write_html

    folder.mkdir(parents=True, exist_ok=True)
    plot(ev, folder)
    (folder / "report.md").write_text(render(ev))
    write_html(folder)
    write_json(folder / "summary.json", ev.to_dict())
