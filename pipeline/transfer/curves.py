"""The curves behind the report: freeze depth (Yosinski et al.) and label efficiency.

Both train extra models seeded like the transfer stage's arms; how they are trained and scored is
the caller's ``accuracy(arms, labels_per_class) -> accuracies`` (test accuracy in the evaluate
stage). Each call hands over every arm trained at one label budget, so the caller can train them
as ensembles (:class:`pipeline.transfer.train.TrainedAccuracy`): all seeds of a point at once, and
the fine-tuned points of the freeze-depth curve together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.transfer.arms import Arm

ArmForSeed = Callable[[int], Arm]
Accuracy = Callable[[Sequence[Arm], int], list[float]]


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
    seeds = list(seeds)
    # (copied, frozen) per point; at k = 0 AnB and AnB+ are both base from scratch: trained once
    points = [(k, k) for k in range(groups + 1)] + [(k, 0) for k in range(1, groups + 1)]
    acc = accuracy([variant(base(s), k, f) for k, f in points for s in seeds], labels)
    n = len(seeds)
    of = {p: tuple(acc[i * n : (i + 1) * n]) for i, p in enumerate(points)}
    return [DepthPoint(k, of[k, k], of[k, 0]) for k in range(groups + 1)]


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
