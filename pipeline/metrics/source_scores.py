"""Scores of a source network on the target before any target training, next to a reference.

A score alone says little: an untrained network of the same architecture gets LogME and H-score
close to those of a badly pretrained one, and both rise with feature width. So every score is
computed for the source network *and* for a random-init reference network of the same
architecture (same seeds), per paired seed on that seed's labelled budget, and reported as
source, reference and their paired difference with intervals. The per-depth ranking (scores of
the features after k groups against the realised accuracy at k) uses the difference to the
reference, so it ranks what pretraining added rather than feature width.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from pipeline.data.domain import Split
from pipeline.metrics.hscore import h_score
from pipeline.metrics.intervals import Interval
from pipeline.metrics.logme import logme
from pipeline.metrics.ranking import Agreement, tau_over_seeds
from pipeline.metrics.suite import (
    DOMAIN_READS,
    LABEL_READS,
    domain_scores,
    equal_samples,
    label_scores,
)
from pipeline.models.grouped import GroupedNet
from pipeline.models.predict import predict_logits

DEPTH_SCORES = {"logme": logme, "h_score": partial(h_score, shrinkage=True)}


@dataclass(frozen=True)
class ScoreComparison:
    """One score of the source network next to the random-init reference.

    Attributes:
        name: Score name.
        reads: How to read it.
        source: The source network's score (per seed for label scores).
        reference: The reference network's score.
        difference: Source minus reference, paired by seed.
    """

    name: str
    reads: str
    source: Interval
    reference: Interval
    difference: Interval


def _outputs(model: GroupedNet, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = torch.from_numpy(x)
    probs = torch.softmax(predict_logits(model, t), dim=1).double().numpy()
    return probs, predict_logits(model, t, features=True).double().numpy()


def compare_label_scores(
    source: GroupedNet,
    reference: Callable[[int], GroupedNet],
    budgets: dict[int, Split],
    confidence: float,
) -> list[ScoreComparison]:
    """LEEP, NCE, LogME, H-score of ``source`` and of ``reference(seed)`` on each seed's
    labelled budget, with intervals over seeds."""
    per_seed = {"source": [], "reference": []}
    for seed, budget in budgets.items():
        for role, model in (("source", source), ("reference", reference(seed))):
            per_seed[role].append(label_scores(*_outputs(model, budget.x), budget.y))
    return [_compare(name, reads, per_seed, confidence) for name, reads in LABEL_READS.items()]


def compare_domain_scores(
    source: GroupedNet,
    reference: GroupedNet,
    target: Split,
    source_images: Split,
    *,
    max_samples: int,
    permutations: int,
    seed: int,
) -> list[ScoreComparison]:
    """PAD and MMD^2 between source and target images, in the features of ``source`` and of the
    reference network, on equal-size samples (unlabelled target images: no labels needed)."""
    xs, xt = equal_samples(source_images.x, target.x, max_samples, seed)
    values = {}
    for role, model in (("source", source), ("reference", reference)):
        fs, ft = (_outputs(model, x)[1] for x in (xs, xt))
        values[role] = [domain_scores(fs, ft, permutations=permutations, seed=seed)]
    return [_compare(name, reads, values, 0.95) for name, reads in DOMAIN_READS.items()]


def _compare(name: str, reads: str, per_seed: dict, confidence: float) -> ScoreComparison:
    src = [s[name] for s in per_seed["source"]]
    ref = [s[name] for s in per_seed["reference"]]
    diff = [a - b for a, b in zip(src, ref, strict=True)]
    return ScoreComparison(
        name,
        reads,
        Interval.of(src, confidence),
        Interval.of(ref, confidence),
        Interval.of(diff, confidence),
    )


def depth_ranking(
    source: GroupedNet,
    reference: Callable[[int], GroupedNet],
    budgets: dict[int, Split],
    realised: Sequence[Sequence[float]],
    confidence: float = 0.95,
) -> dict[str, Agreement]:
    """Kendall's tau between each depth score's gain over the reference (features after k
    groups, k = 1..G, averaged over seeds' budgets) and the realised accuracy at k, with a
    bootstrap interval over the paired seeds.

    Args:
        source: The source network.
        reference: A random-init network of the same architecture per seed.
        budgets: Each seed's labelled budget, in the order of ``realised``'s values.
        realised: Per depth k = 1..G, the accuracy of each seed of ``budgets``.
        confidence: Interval coverage.
    """
    seeds = list(budgets)
    gains = {name: np.zeros((len(seeds), source.num_groups)) for name in DEPTH_SCORES}
    for i, budget in enumerate(budgets.values()):
        x = torch.from_numpy(budget.x)
        for sign, model in ((1.0, source), (-1.0, reference(seeds[i]))):
            model.eval()
            with torch.inference_mode():
                for k in range(1, model.num_groups + 1):
                    f = model.pool(model.forward_groups(x, 0, k)).double().numpy()
                    for name, score in DEPTH_SCORES.items():
                        gains[name][i, k - 1] += sign * score(f, budget.y)
    per_seed = np.asarray(realised, dtype=np.float64).T  # (seeds, depths)
    return {
        name: tau_over_seeds(g, per_seed, confidence, seed=seeds[0]) for name, g in gains.items()
    }
