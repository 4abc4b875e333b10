"""How well a validator selects: what it picks vs what the test labels would pick.

Every (arm, seed, epoch) of the transfer stage is a candidate model, scored by every validator
during training (no target label) and, in the evaluate stage only, by its accuracy on the target
test split. Per seed, a validator picks the candidate it scores highest (a method *and* a stopping
epoch); the oracle pick is the candidate with the highest test accuracy. The regret (oracle pick
minus validator pick) is what selecting without labels costs, and Spearman's rank correlation
between score and accuracy over all candidates says how well the validator orders models at all
(Musgrave et al., 2022, report the same two views).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.metrics.intervals import ACCURACY, Interval


@dataclass(frozen=True)
class Candidate:
    """One model of one epoch: its validator scores and its target test accuracy."""

    arm: str
    seed: int
    epoch: int
    scores: Mapping[str, float]
    acc: float


@dataclass(frozen=True)
class ValidatorResult:
    """One validator's selections over the seeds.

    Attributes:
        name: The validator.
        picked: Test accuracy of the candidate it picks, per seed.
        best: Test accuracy of the oracle-picked candidate, per seed.
        regret: ``best - picked`` per seed.
        spearman: Rank correlation of its score with test accuracy over all candidates.
        picks: ``(arm, epoch)`` it picked, per seed.
    """

    name: str
    picked: Interval
    best: Interval
    regret: Interval
    spearman: float
    picks: tuple[tuple[str, int], ...]


def candidates(
    history: Sequence[Mapping],
    predictions: Mapping[str, np.ndarray],
    labels: np.ndarray,
    validators: Sequence[str],
) -> list[Candidate]:
    """Candidates from the transfer history rows (``arm``, ``seed``, ``epoch``, ``val_<name>``)
    and the per-epoch test predictions (``"<arm>/seed<s>"`` -> (epochs, n) classes)."""
    out = []
    for row in history:
        arm, seed, epoch = str(row["arm"]), int(row["seed"]), int(row["epoch"])
        pred = predictions[f"{arm}/seed{seed}"][epoch]
        scores = {v: float(row[f"val_{v}"]) for v in validators}
        out.append(Candidate(arm, seed, epoch, scores, float(np.mean(pred == labels))))
    return out


def _first_max(items: Sequence[Candidate], key) -> Candidate:
    # ties go to the earliest candidate (history order), so the pick is deterministic
    best = items[0]
    for c in items[1:]:
        if key(c) > key(best):
            best = c
    return best


def rank_validators(
    cands: Sequence[Candidate], validators: Sequence[str], confidence: float
) -> dict[str, ValidatorResult]:
    """Each validator's per-seed picks, regret and rank correlation (see the module doc)."""
    from scipy.stats import spearmanr

    seeds = sorted({c.seed for c in cands})
    by_seed = {s: [c for c in cands if c.seed == s] for s in seeds}
    accs = [c.acc for c in cands]
    out = {}
    for name in validators:
        picks = [_first_max(by_seed[s], lambda c, n=name: _finite(c.scores[n])) for s in seeds]
        bests = [_first_max(by_seed[s], lambda c: c.acc) for s in seeds]
        scores = [_finite(c.scores[name]) for c in cands]
        rho = float(spearmanr(scores, accs).statistic) if len(set(scores)) > 1 else math.nan
        out[name] = ValidatorResult(
            name=name,
            picked=Interval.of([p.acc for p in picks], confidence, ACCURACY),
            best=Interval.of([b.acc for b in bests], confidence, ACCURACY),
            regret=Interval.of(  # >= 0 per seed: the best is best by test accuracy
                [b.acc - p.acc for p, b in zip(picks, bests, strict=True)], confidence, ACCURACY
            ),
            spearman=rho,
            picks=tuple((p.arm, p.epoch) for p in picks),
        )
    return out


def gap_closed(
    chosen: Sequence[float], baseline: Sequence[float], oracle: Sequence[float], confidence: float
) -> Interval:
    """Share of the baseline-to-oracle accuracy gap the chosen models close, per paired seed:
    ``(chosen - baseline) / (oracle - baseline)``; seeds where the oracle does not beat the
    baseline have no gap to close and are left out (NaN when none is left)."""
    fractions = [
        (c - b) / (o - b) for c, b, o in zip(chosen, baseline, oracle, strict=True) if o - b > 0
    ]
    if not fractions:
        return Interval(math.nan, math.nan, math.nan)
    return Interval.of(fractions, confidence)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf
