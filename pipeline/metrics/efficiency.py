"""How much data and compute transfer saves.

Label efficiency: the number of labels per class transfer needs to match the best accuracy
training from scratch reaches on the curve, read off the transfer curve by linear interpolation in
log(labels) (both curves are first made monotone with a running maximum). Compute: the epoch and
wall time at which transfer's validation accuracy first reaches scratch's best validation accuracy,
against the epoch and time scratch needed for it (cf. the "time to accuracy" of Coleman et al.,
DAWNBench, 2017).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


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


def labels_saved(
    labels: Sequence[float], transfer: Sequence[float], scratch: Sequence[float]
) -> dict[str, float]:
    """Labels per class transfer saves to reach scratch's best accuracy on the curve.

    Returns:
        ``goal`` (scratch's best accuracy), ``scratch_labels`` (labels where scratch first gets
        there), ``transfer_labels`` (interpolated; nan if transfer never gets there) and ``saved``
        (their difference; nan if transfer never gets there).
    """
    goal = float(np.max(scratch))
    scratch_labels = labels_to_reach(labels, scratch, goal)
    transfer_labels = labels_to_reach(labels, transfer, goal)
    return {
        "goal": goal,
        "scratch_labels": scratch_labels,
        "transfer_labels": transfer_labels,
        "saved": scratch_labels - transfer_labels,
    }


def time_to_accuracy(history: Sequence[dict], goal: float, key: str = "val_acc") -> dict:
    """First epoch (1-based count) and elapsed seconds at which ``history[key] >= goal``.

    Returns:
        ``{"epochs": n, "seconds": s}``, both nan when the goal is never reached.
    """
    for row in history:
        if row[key] >= goal:
            return {"epochs": int(row["epoch"]) + 1, "seconds": float(row["seconds"])}
    return {"epochs": math.nan, "seconds": math.nan}


def compute_saved(transfer: Sequence[dict], scratch: Sequence[dict], key: str = "val_acc") -> dict:
    """Epochs and seconds transfer saves to reach scratch's best validation accuracy."""
    goal = max(r[key] for r in scratch)
    t, s = time_to_accuracy(transfer, goal, key), time_to_accuracy(scratch, goal, key)
    return {
        "goal": goal,
        "transfer_epochs": t["epochs"],
        "scratch_epochs": s["epochs"],
        "epochs_saved": s["epochs"] - t["epochs"],
        "transfer_seconds": t["seconds"],
        "scratch_seconds": s["seconds"],
        "seconds_saved": s["seconds"] - t["seconds"],
    }


def mean_compute_saved(history: Sequence[dict], primary: str, baseline: str) -> dict:
    """:func:`compute_saved` of ``primary`` vs ``baseline`` per paired seed, averaged.

    Args:
        history: Per-epoch rows with ``arm``, ``seed``, ``epoch``, ``val_acc``, ``seconds``.
    """
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


def label_savings(
    labels: Sequence[float], transfer: Sequence[float], scratch: Sequence[float], reached: float
) -> dict[str, float]:
    """:func:`labels_saved`, plus ``scratch_equivalent``: the labels per class scratch needs on
    the curve to reach ``reached`` (the transfer arm's accuracy at its budget)."""
    out = labels_saved(labels, transfer, scratch)
    out["scratch_equivalent"] = labels_to_reach(labels, scratch, reached)
    return out
