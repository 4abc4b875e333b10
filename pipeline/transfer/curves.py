"""The curves behind the report: freeze depth (Yosinski et al.) and label efficiency.

Both train extra models seeded like the transfer stage's arms; how a point is trained and scored
is the caller's ``accuracy(arm, labels_per_class) -> float`` (test accuracy in the evaluate
stage), so the protocols here are plain loops over typed points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.transfer.arms import Arm

ArmForSeed = Callable[[int], Arm]
Accuracy = Callable[[Arm, int], float]


@dataclass(frozen=True)
class DepthPoint:
    """One k of the freeze-depth curve: per-seed accuracies of AnB (frozen) and AnB+ (fine-tuned).

    Attributes:
        k: Layer groups copied from the source.
        frozen: Per-seed accuracy with the k copied groups frozen (AnB).
        finetuned: Per-seed accuracy with everything fine-tuned (AnB+).
    """

    k: int
    frozen: tuple[float, ...]
    finetuned: tuple[float, ...]


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
    """Yosinski et al.'s AnB (copy k, frozen) and AnB+ (copy k, fine-tune all), k = 0..G.

    Yosinski, Clune, Bengio & Lipson, "How transferable are features in deep neural networks?",
    NeurIPS 2014. Every point trains with ``base``'s optimiser settings, so only the copied/frozen
    depth changes along the curve; at k = 0 both are ``base`` from scratch.
    """
    rows = []
    for k in range(groups + 1):
        frozen = tuple(accuracy(variant(base(s), k, k), labels) for s in seeds)
        tuned = frozen if k == 0 else tuple(accuracy(variant(base(s), k, 0), labels) for s in seeds)
        rows.append(DepthPoint(k, frozen, tuned))
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
