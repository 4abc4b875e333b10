"""The curves behind the report: freeze depth (Yosinski et al.) and label efficiency.

Both train extra models seeded like the transfer stage's arms, with per-seed values kept so every
point carries an interval over the same paired seeds. How they are trained and scored is the
caller's ``accuracy(arms, labels_per_class) -> accuracies`` (test accuracy in the evaluate stage).
Each call hands over every arm trained at one label budget, so the caller can train them as
ensembles (:class:`pipeline.transfer.train.TrainedAccuracy`): all seeds of a point at once, and
the points of the freeze-depth curve that share a frozen depth together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.metrics.intervals import ACCURACY, Interval
from pipeline.transfer.arms import Arm

ArmForSeed = Callable[[int], Arm]
Accuracy = Callable[[Sequence[Arm], int], list[float]]


@dataclass(frozen=True)
class DepthPoint:
    """One k of the freeze-depth curve, per-seed accuracies of three ways to use k groups.

    Attributes:
        k: Layer groups.
        anb: Copy the first k source groups, keep them frozen, train the rest from a random init
            (Yosinski et al.'s AnB).
        anb_plus: Copy the first k groups and fine-tune everything (AnB+).
        freeze: Copy every source group and freeze the first k (what ``transfer.freeze_groups``
            chooses: k = 0 is fine-tuning, k = G a linear probe).
    """

    k: int
    anb: tuple[float, ...]
    anb_plus: tuple[float, ...]
    freeze: tuple[float, ...]


@dataclass(frozen=True)
class LabelPoint:
    """One budget of the label-efficiency curve: per-seed accuracies of transfer and scratch."""

    labels_per_class: int
    transfer: tuple[float, ...]
    scratch: tuple[float, ...]


def variant(arm: Arm, init_groups: int, freeze_groups: int) -> Arm:
    """``arm`` copying ``init_groups`` source groups and freezing ``freeze_groups`` of them."""
    settings = dataclasses.replace(arm.settings, freeze_groups=freeze_groups)
    return dataclasses.replace(arm, init_groups=init_groups, settings=settings)


def freeze_depth_curve(
    base: ArmForSeed, groups: int, labels: int, seeds: Sequence[int], accuracy: Accuracy
) -> list[DepthPoint]:
    """AnB, AnB+ and copy-all-freeze-k accuracy for k = 0..G, every point with ``base``'s
    optimiser settings (the tuned ones), so only how the source is used changes along the curve.

    Yosinski, Clune, Bengio & Lipson, "How transferable are features in deep neural networks?",
    NeurIPS 2014. At k = 0, AnB and AnB+ are ``base`` from a random init.
    """
    seeds = list(seeds)
    # (copied, frozen) groups of every point; a model on two series (AnB and AnB+ at k = 0,
    # AnB+ at k = G and freeze at k = 0, ...) is asked for once
    anb = [(k, k) for k in range(groups + 1)]
    anb_plus = [(k, 0) for k in range(groups + 1)]
    freeze = [(groups, k) for k in range(groups + 1)]
    points = list(dict.fromkeys(anb + anb_plus + freeze))
    acc = accuracy([variant(base(s), c, f) for c, f in points for s in seeds], labels)
    n = len(seeds)
    of = {p: tuple(acc[i * n : (i + 1) * n]) for i, p in enumerate(points)}
    return [DepthPoint(k, of[anb[k]], of[anb_plus[k]], of[freeze[k]]) for k in range(groups + 1)]


def label_curve(
    transfer: ArmForSeed,
    scratch: ArmForSeed,
    budgets: Sequence[int],
    smallest_class: int,
    seeds: Sequence[int],
    accuracy: Accuracy,
) -> list[LabelPoint]:
    """Transfer and scratch accuracy at each label budget (capped at the smallest class)."""
    rows, seeds = [], list(seeds)
    for n in sorted({min(int(b), smallest_class) for b in budgets}):
        acc = accuracy([transfer(s) for s in seeds] + [scratch(s) for s in seeds], n)
        rows.append(LabelPoint(n, tuple(acc[: len(seeds)]), tuple(acc[len(seeds) :])))
    return rows


def mean(values: Sequence[float]) -> float:
    """Mean of a point's per-seed values."""
    return float(np.mean(values))


def band(values: Sequence[float], confidence: float) -> Interval:
    """A point's mean accuracy and interval over seeds."""
    return Interval.of(values, confidence, ACCURACY)


def best_k(rows: Sequence[DepthPoint], series: str = "freeze") -> int:
    """The k with the highest mean accuracy on ``series`` (the smallest such k on ties)."""
    return max(rows, key=lambda r: (mean(getattr(r, series)), -r.k)).k
