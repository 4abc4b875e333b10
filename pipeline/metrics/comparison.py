"""Arms compared over paired seeds: per-arm accuracy intervals, gains and negative transfer gaps.

Seeds are paired (seed s gives every arm the same labelled subset and random init), so
differences are taken per seed and summarised with a Student-t interval over seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.metrics.classification import model_metrics
from pipeline.metrics.intervals import ACCURACY, DIFFERENCE, Interval
from pipeline.metrics.ntg import NTGResult, negative_transfer_gap


@dataclass(frozen=True)
class ScoredModel:
    """Test scores of one trained (arm, seed) model.

    Attributes:
        arm: Arm name.
        seed: Paired seed.
        acc: Test accuracy.
        macro_f1: Test macro-F1.
        confusion: Confusion matrix (rows: true class).
        init_groups: Groups the arm copied from the source.
        freeze_groups: Groups it kept frozen.
        model_id: MLflow LoggedModel id.
        run_id: MLflow run that trained it.
    """

    arm: str
    seed: int
    acc: float
    macro_f1: float
    confusion: list[list[int]]
    init_groups: int
    freeze_groups: int
    model_id: str = ""
    run_id: str = ""


def score_models(
    runs: Sequence[dict], load: Callable[[dict], torch.nn.Module], x: torch.Tensor, y: torch.Tensor
) -> list[ScoredModel]:
    """Test scores of every trained model.

    Args:
        runs: One dict per model with ``arm``, ``seed``, ``init_groups``, ``freeze_groups``,
            ``model_id`` and ``run_id`` (the transfer stage's index rows).
        load: Loads a row's model.
        x: Test inputs.
        y: Test labels.
    """
    keys = ("arm", "seed", "init_groups", "freeze_groups", "model_id", "run_id")
    scored = []
    for row in runs:
        model = load(row)
        m = model_metrics(model, x, y, model.num_classes)
        scored.append(
            ScoredModel(
                acc=m["acc"],
                macro_f1=m["macro_f1"],
                confusion=m["confusion"],
                **{k: row[k] for k in keys},
            )
        )
    return scored


@dataclass(frozen=True)
class ArmStats:
    """One arm over its seeds.

    Attributes:
        name: Arm name.
        acc: Test accuracy: mean, interval and per-seed values (in seed order).
        macro_f1: Mean test macro-F1.
        seeds: The seeds, ascending.
        init_groups: Groups copied from the source.
        freeze_groups: Groups kept frozen.
    """

    name: str
    acc: Interval
    macro_f1: float
    seeds: tuple[int, ...]
    init_groups: int
    freeze_groups: int


def summarise_arms(scored: Sequence[ScoredModel], confidence: float) -> dict[str, ArmStats]:
    """Per-arm statistics, arms in first-seen order, seeds ascending."""
    arms = {}
    for name in dict.fromkeys(r.arm for r in scored):
        rows = sorted((r for r in scored if r.arm == name), key=lambda r: r.seed)
        arms[name] = ArmStats(
            name=name,
            acc=Interval.of([r.acc for r in rows], confidence, ACCURACY),
            macro_f1=float(np.mean([r.macro_f1 for r in rows])),
            seeds=tuple(r.seed for r in rows),
            init_groups=rows[0].init_groups,
            freeze_groups=rows[0].freeze_groups,
        )
    return arms


def paired_gain(arm: ArmStats, baseline: ArmStats, confidence: float) -> Interval:
    """Accuracy of ``arm`` minus ``baseline``, per paired seed, with its interval."""
    if arm.seeds != baseline.seeds:
        raise ValueError(f"{arm.name} and {baseline.name} were not trained on the same seeds")
    diffs = [t - s for t, s in zip(arm.acc.values, baseline.acc.values, strict=True)]
    return Interval.of(diffs, confidence, DIFFERENCE)


def gaps(arms: dict[str, ArmStats], baseline: str, confidence: float) -> dict[str, NTGResult]:
    """Negative transfer gap (error with source - error without) of every arm vs ``baseline``."""
    base = [1 - v for v in arms[baseline].acc.values]
    return {
        name: negative_transfer_gap([1 - v for v in a.acc.values], base, confidence)
        for name, a in arms.items()
        if name != baseline
    }
