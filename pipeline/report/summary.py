"""The typed result of an evaluation: what the report, the metrics files and MLflow show.

Every number the verdict states comes from the same paired seeds and carries its interval; a
saving (labels, epochs) is stated only when every seed reached the goal and the interval
excludes zero (:class:`pipeline.metrics.efficiency.PerSeed`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pipeline.jsonfile import json_safe
from pipeline.metrics.comparison import (
    ArmStats,
    ScoredModel,
    gaps,
    paired_gain,
    summarise_arms,
)
from pipeline.metrics.efficiency import PerSeed
from pipeline.metrics.intervals import DIFFERENCE, Interval
from pipeline.metrics.ntg import NTGResult
from pipeline.metrics.ranking import Agreement
from pipeline.metrics.source_scores import ScoreComparison
from pipeline.transfer.curves import DepthPoint, LabelPoint, best_k


@dataclass(frozen=True)
class Recommendation:
    """How many layer groups to freeze, and the evidence for it.

    Attributes:
        k: Groups to freeze (of ``groups``), as the primary arm used it.
        groups: The backbone's layer groups.
        tuned: Whether the study chose k on validation data (else it came from the config).
        accuracy: The primary arm's test accuracy at k over the paired seeds.
        same_as: Arms that train the same model as the primary arm at this k (trained once).
        curve_best: The k with the best mean test accuracy on the copy-all-freeze-k curve.
        curve_difference: Test accuracy at ``curve_best`` minus at ``k`` on that curve, paired
            by seed (None when they are the same k or there is no curve).
    """

    k: int
    groups: int
    tuned: bool
    accuracy: Interval
    same_as: tuple[str, ...] = ()
    curve_best: int | None = None
    curve_difference: Interval | None = None

    @property
    def curve_agrees(self) -> bool | None:
        """True when the curve's best k is k or not significantly better; None without curve."""
        if self.curve_best is None:
            return None
        return self.curve_best == self.k or not self.curve_difference.excludes_zero


def recommend(
    k: int,
    groups: int,
    tuned: bool,
    accuracy: Interval,
    same_as: tuple[str, ...],
    curve: list[DepthPoint] | None,
    confidence: float,
) -> Recommendation:
    """The recommendation for ``k``, checked against the freeze-depth curve's freeze series."""
    if not curve:
        return Recommendation(k, groups, tuned, accuracy, same_as)
    best = best_k(curve)
    diff = None
    if best != k:
        at = {r.k: r.freeze for r in curve}
        diffs = [b - a for b, a in zip(at[best], at[k], strict=True)]
        diff = Interval.of(diffs, confidence, DIFFERENCE)
    return Recommendation(k, groups, tuned, accuracy, same_as, best, diff)


@dataclass
class Evaluation:
    """Everything the evaluate stage found.

    Attributes:
        source: Source dataset name.
        target: Target dataset name.
        budget: The label budget in words (``1 train + 3 val labels per class``).
        labels_per_class: Training labels per class of the arms.
        confidence: Interval level.
        primary: The transfer arm the verdict is about.
        baseline: The no-transfer arm it is compared with.
        arms: Per-arm statistics.
        ntg: Negative transfer gap of every arm against the baseline.
        gain: Primary minus baseline accuracy per paired seed.
        classes: Target class names.
        confusion: Confusion matrix of the primary arm's first seed.
        recommendation: The recommended freeze depth and its evidence.
        settings: The primary arm's optimiser settings (what the curves used too).
        runs: MLflow run ids behind the tables (``transfer``, ``tune``, ``evaluate``).
        epochs_saved: Per seed, epochs scratch needs to reach its best validation accuracy
            minus the epochs the primary arm needs.
        freeze_depth: The freeze-depth curve, if computed.
        label_efficiency: The label-efficiency curve, if computed.
        label_budgets_capped: Requested label budgets above the smallest target class, drawn at
            that class's size instead.
        labels_saved: Per seed, labels per class transfer saves to reach scratch's best on the
            label curve.
        scratch_equivalent: Per seed, labels per class scratch needs to match the primary arm.
        scores: Label scores (source vs random-init reference, per seed).
        domain: Domain scores (source vs reference features).
        ranking: Kendall's tau of per-depth score gains against the depth curve, with its
            bootstrap interval over the curve's seeds.
        large_validation: Primary and baseline test accuracy when early stopping used the whole
            validation split instead of the budget, paired differences (an option).
    """

    source: str
    target: str
    budget: str
    labels_per_class: int
    confidence: float
    primary: str
    baseline: str
    arms: dict[str, ArmStats]
    ntg: dict[str, NTGResult]
    gain: Interval
    classes: tuple[str, ...] = ()
    confusion: list[list[int]] = field(default_factory=list)
    recommendation: Recommendation | None = None
    settings: dict = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)
    epochs_saved: PerSeed | None = None
    freeze_depth: list[DepthPoint] | None = None
    label_efficiency: list[LabelPoint] | None = None
    label_budgets_capped: tuple[int, ...] = ()
    labels_saved: PerSeed | None = None
    scratch_equivalent: PerSeed | None = None
    scores: list[ScoreComparison] | None = None
    domain: list[ScoreComparison] | None = None
    ranking: dict[str, Agreement] | None = None
    large_validation: dict[str, Interval] | None = None

    @classmethod
    def of_scored(
        cls,
        scored: list[ScoredModel],
        primary: str,
        baseline: str,
        confidence: float,
        **fields: object,
    ) -> Evaluation:
        """Per-arm statistics, gaps, the paired gain and the primary arm's first confusion matrix
        from the scored models; ``fields`` fill the rest."""
        arms = summarise_arms(scored, confidence)
        return cls(
            primary=primary,
            baseline=baseline,
            confidence=confidence,
            arms=arms,
            ntg=gaps(arms, baseline, confidence),
            gain=paired_gain(arms[primary], arms[baseline], confidence),
            confusion=next(r for r in scored if r.arm == primary).confusion,
            **fields,
        )

    @property
    def verdict(self) -> str:
        """positive / negative / inconclusive, from the primary arm's gap interval."""
        return self.ntg[self.primary].verdict

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.arms[self.primary].seeds

    def flat_metrics(self) -> dict:
        """The keys `dvc metrics show` / `dvc exp show` display (non-finite values as null).

        Savings are null unless every seed reached the goal (see :class:`PerSeed`).
        """
        p, b = self.arms[self.primary], self.arms[self.baseline]
        m = {
            "transfer.test_acc": p.acc.mean,
            "scratch.test_acc": b.acc.mean,
            "transfer_gain": self.gain.mean,
            "transfer_gain_ci_low": self.gain.low,
            "transfer_gain_ci_high": self.gain.high,
            "ntg": self.ntg[self.primary].mean,
            "negative_transfer": self.verdict == "negative",
            "inconclusive": self.verdict == "inconclusive",
            "seeds": len(self.seeds),
        }
        if self.recommendation:
            m["recommended_k"] = self.recommendation.k
        for name, a in self.arms.items():
            m[f"arms.{name}.test_acc"] = a.acc.mean
            m[f"arms.{name}.macro_f1"] = a.macro_f1
        for s in self.scores or []:
            m[f"scores.{s.name}"] = s.source.mean
            m[f"scores.{s.name}_vs_random"] = s.difference.mean
        for s in self.domain or []:
            m[f"scores.{s.name}"] = s.source.mean
        for key, per_seed in (
            ("labels_saved", self.labels_saved),
            ("scratch_equivalent_labels", self.scratch_equivalent),
            ("epochs_saved", self.epochs_saved),
        ):
            if per_seed is not None:
                iv = per_seed.interval(self.confidence)
                m[key] = iv.mean if iv else None
                m[f"{key}_seeds_reached"] = per_seed.reached
        return json_safe(m)

    def to_dict(self) -> dict:
        """A JSON-able dict of the whole evaluation (for summary.json)."""
        out = dataclasses.asdict(self)
        out["verdict"], out["seeds"] = self.verdict, list(self.seeds)
        return json_safe(out)
