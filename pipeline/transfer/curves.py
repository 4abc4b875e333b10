"""The curves behind the report: freeze depth (Yosinski et al.) and label efficiency.

Both train extra models seeded like the transfer stage's arms, with per-seed values kept so every
point carries an interval over the same paired seeds. How a point is trained and scored is the
caller's ``accuracy(arm, labels_per_class) -> float`` (test accuracy in the evaluate stage).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.metrics.intervals import Interval
from pipeline.transfer.arms import Arm

ArmForSeed = Callable[[int], Arm]
Accuracy = Callable[[Arm, int], float]


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

    def series(init: Callable[[int], int], freeze: Callable[[int], int], k: int) -> tuple:
        return tuple(accuracy(variant(base(s), init(k), freeze(k)), labels) for s in seeds)

    rows = []
    for k in range(groups + 1):
        anb = series(lambda k: k, lambda k: k, k)
        anb_plus = anb if k == 0 else series(lambda k: k, lambda k: 0, k)
        freeze = series(lambda k: groups, lambda k: k, k)
        rows.append(DepthPoint(k, anb, anb_plus, freeze))
    return rows


def label_curve(
    transfer: ArmForSeed,
    scratch: ArmForSeed,
    budgets: Sequence[int],
    smallest_class: int,
    seeds: Sequence[int],
    accuracy: Accuracy,
) -> list[LabelPoint]:
    """Transfer and scratch accuracy at each label budget (capped at the smallest class)."""
    rows = []
    for n in sorted({min(int(b), smallest_class) for b in budgets}):
        rows.append(
            LabelPoint(
                n,
                tuple(accuracy(transfer(s), n) for s in seeds),
                tuple(accuracy(scratch(s), n) for s in seeds),
            )
        )
    return rows


def mean(values: Sequence[float]) -> float:
    """Mean of a point's per-seed values."""
    return float(np.mean(values))


def band(values: Sequence[float], confidence: float) -> Interval:
    """A point's mean and interval over seeds."""
    return Interval.of(values, confidence)


def best_k(rows: Sequence[DepthPoint], series: str = "freeze") -> int:
    """The k with the highest mean accuracy on ``series`` (the smallest such k on ties)."""
    return max(rows, key=lambda r: (mean(getattr(r, series)), -r.k)).k
