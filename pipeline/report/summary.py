"""The typed result of an evaluation: what the report, the metrics files and MLflow show."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from pipeline.metrics.comparison import ArmStats
from pipeline.metrics.intervals import Interval
from pipeline.metrics.ntg import NTGResult
from pipeline.transfer.curves import DepthPoint, LabelPoint, mean


@dataclass(frozen=True)
class Score:
    """A transferability or domain score and how to read it."""

    value: float
    reads: str


@dataclass
class Evaluation:
    """Everything the evaluate stage found.

    Attributes:
        source: Source dataset name.
        target: Target dataset name.
        labels_per_class: Label budget of the arms.
        confidence: Interval level.
        primary: The transfer arm the verdict is about.
        baseline: The no-transfer arm it is compared with.
        arms: Per-arm statistics.
        ntg: Negative transfer gap of every arm against the baseline.
        gain: Primary minus baseline accuracy per paired seed.
        classes: Target class names.
        confusion: Confusion matrix of the primary arm's first seed.
        tuned_freeze_groups: The depth the study picked, if it ran.
        compute_saved: Epochs/seconds the primary arm saves to reach the baseline's best.
        freeze_depth: The freeze-depth curve, if computed.
        label_efficiency: The label-efficiency curve, if computed.
        labels_saved: What the label curve says transfer saves.
        scores: Transferability and domain scores of the source model.
        ranking: Kendall's tau of per-depth scores against the realised depth curve.
    """

    source: str
    target: str
    labels_per_class: int
    confidence: float
    primary: str
    baseline: str
    arms: dict[str, ArmStats]
    ntg: dict[str, NTGResult]
    gain: Interval
    classes: tuple[str, ...] = ()
    confusion: list[list[int]] = field(default_factory=list)
    tuned_freeze_groups: int | None = None
    compute_saved: dict | None = None
    freeze_depth: list[DepthPoint] | None = None
    label_efficiency: list[LabelPoint] | None = None
    labels_saved: dict | None = None
    scores: dict[str, Score] | None = None
    ranking: dict[str, float] | None = None

    @property
    def verdict(self) -> str:
        """positive / negative / inconclusive, from the primary arm's gap interval."""
        return self.ntg[self.primary].verdict

    @property
    def seeds(self) -> int:
        return len(self.arms[self.primary].seeds)

    @property
    def best_depth(self) -> int | None:
        """The k > 0 with the best mean frozen accuracy on the depth curve."""
        if not self.freeze_depth:
            return None
        return max(self.freeze_depth[1:], key=lambda r: mean(r.frozen)).k

    def flat_metrics(self) -> dict:
        """The keys `dvc metrics show` / `dvc exp show` display (non-finite values as null)."""
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
        }
        for name, a in self.arms.items():
            m[f"arms.{name}.test_acc"] = a.acc.mean
            m[f"arms.{name}.macro_f1"] = a.macro_f1
        for k, v in (self.scores or {}).items():
            m[f"scores.{k}"] = v.value
        if self.labels_saved:
            m["labels_saved"] = self.labels_saved["saved"]
            m["scratch_equivalent_labels"] = self.labels_saved["scratch_equivalent"]
        if self.compute_saved:
            m["epochs_saved"] = self.compute_saved["epochs_saved"]
        return {k: _finite_or_none(v) for k, v in m.items()}

    def to_dict(self) -> dict:
        """A JSON-able dict of the whole evaluation (for summary.json)."""
        out = dataclasses.asdict(self)
        out["verdict"], out["seeds"], out["best_depth"] = self.verdict, self.seeds, self.best_depth
        return _json_safe(out)


def _finite_or_none(v: object) -> object:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _json_safe(obj: object) -> object:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return _finite_or_none(obj)
