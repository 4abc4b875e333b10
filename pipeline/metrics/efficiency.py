"""How much data and compute transfer saves, per paired seed, with every seed counted.

Label efficiency: on each seed's label curve, the labels per class transfer needs to reach the
best accuracy training from scratch reaches on that curve, read off the transfer curve by linear
interpolation in log(labels) (both curves first made monotone with a running maximum); and the
labels per class scratch needs to match the transfer arm at its budget. Compute: the epoch at which
transfer's validation accuracy first reaches scratch's best, against the epoch scratch needed for
it (the "time to accuracy" of Coleman et al., DAWNBench, 2017).

A seed on which transfer never gets there is *not reached*: it is never dropped from an average
(dropping it would report a saving from the seeds that happened to succeed). A saving is claimed
only when every seed reached the goal and the paired interval over seeds excludes zero
(:class:`PerSeed`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.metrics.intervals import Interval


def labels_to_reach(labels: Sequence[float], accuracy: Sequence[float], goal: float) -> float:
    """Smallest labels-per-class at which the (running-max) curve reaches ``goal``; nan if never.

    Interpolates linearly in log(labels) between the two points around ``goal``.
    """
    x = np.log(np.asarray(labels, dtype=float))
    acc = np.maximum.accumulate(np.asarray(accuracy, dtype=float))
    if acc[-1] < goal:
        return math.nan
    i = int(np.argmax(acc >= goal))
    if i == 0:
        return float(labels[0])
    frac = (goal - acc[i - 1]) / (acc[i] - acc[i - 1])
    return float(np.exp(x[i - 1] + frac * (x[i] - x[i - 1])))


@dataclass(frozen=True)
class PerSeed:
    """A quantity measured on each paired seed; nan marks a seed that never reached the goal.

    Attributes:
        values: One value per seed, in seed order (nan: not reached).
    """

    values: tuple[float, ...]

    @property
    def reached(self) -> int:
        """Seeds with a value."""
        return sum(not math.isnan(v) for v in self.values)

    @property
    def all_reached(self) -> bool:
        return self.reached == len(self.values) > 0

    def interval(self, confidence: float) -> Interval | None:
        """Mean and interval over seeds; None unless every seed reached the goal."""
        return Interval.of(self.values, confidence) if self.all_reached else None

    def claim(self, confidence: float) -> Interval | None:
        """The interval when it supports a claim (every seed reached, interval excludes 0)."""
        iv = self.interval(confidence)
        return iv if iv is not None and iv.excludes_zero else None


def labels_saved(
    labels: Sequence[float],
    transfer: Sequence[Sequence[float]],
    scratch: Sequence[Sequence[float]],
) -> PerSeed:
    """Per seed: labels per class scratch needs to reach its best accuracy on the curve, minus
    the labels transfer needs for it (nan where transfer never reaches it).

    Args:
        labels: The budgets of the curve, ascending.
        transfer: Per seed, transfer's accuracy at each budget.
        scratch: Per seed (same order), scratch's accuracy at each budget.
    """
    out = []
    for t, s in zip(transfer, scratch, strict=True):
        goal = float(np.max(s))
        out.append(labels_to_reach(labels, s, goal) - labels_to_reach(labels, t, goal))
    return PerSeed(tuple(out))


def scratch_equivalent(
    labels: Sequence[float], scratch: Sequence[Sequence[float]], reached: Sequence[float]
) -> PerSeed:
    """Per seed: labels per class scratch needs on its curve to match ``reached`` (the transfer
    arm's accuracy at its budget on that seed); nan where scratch never gets there on the curve."""
    return PerSeed(
        tuple(labels_to_reach(labels, s, r) for s, r in zip(scratch, reached, strict=True))
    )


def epochs_to_reach(history: Sequence[dict], goal: float, key: str = "val_acc") -> float:
    """First epoch (1-based count) with ``history[key] >= goal``; nan if never."""
    for row in history:
        if row[key] >= goal:
            return float(int(row["epoch"]) + 1)
    return math.nan


def epochs_saved(history: Sequence[dict], primary: str, baseline: str) -> PerSeed:
    """Per seed: epochs scratch needs to reach its best validation accuracy, minus the epochs
    ``primary`` needs to reach it (nan where it never does).

    Args:
        history: Per-epoch rows with ``arm``, ``seed``, ``epoch``, ``val_acc``.
        primary: The transfer arm.
        baseline: The scratch arm.
    """
    out = []
    for seed in sorted({r["seed"] for r in history}):
        t = [r for r in history if r["arm"] == primary and r["seed"] == seed]
        s = [r for r in history if r["arm"] == baseline and r["seed"] == seed]
        if not (t and s):
            continue
        goal = max(r["val_acc"] for r in s)
        out.append(epochs_to_reach(s, goal) - epochs_to_reach(t, goal))
    return PerSeed(tuple(out))
