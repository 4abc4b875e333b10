"""Scores of a source network on the target before any target training, and per-depth ranking.

Runs the source model on the labelled target images (softmax outputs and pooled features) and on
source images, then computes every score of :mod:`pipeline.metrics.suite`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pipeline.data.domain import Split
from pipeline.metrics.hscore import h_score
from pipeline.metrics.logme import logme
from pipeline.metrics.ranking import kendall_tau
from pipeline.metrics.suite import transferability_scores
from pipeline.models.grouped import GroupedNet
from pipeline.models.predict import predict_logits


def source_model_scores(
    model: GroupedNet,
    target: Split,
    source: Split,
    *,
    max_samples: int,
    permutations: int,
    seed: int,
) -> dict[str, float]:
    """LEEP, NCE, LogME, H-score on ``target`` and domain distances between the two splits.

    Args:
        model: The source network (its head predicts source classes).
        target: Labelled target images.
        source: Source images (a seeded sample of ``max_samples`` is used).
        max_samples: Rows per domain for the domain-distance scores.
        permutations: Permutations of the MMD test.
        seed: Seed of the sample, PAD's split and the permutations.
    """
    x, y = torch.from_numpy(target.x), target.y
    rng = np.random.default_rng(seed)
    xs = torch.from_numpy(source.x[rng.permutation(len(source.x))[:max_samples]])
    xt = x[:max_samples]
    probs = torch.softmax(predict_logits(model, x), dim=1).double().numpy()
    feats = predict_logits(model, x, features=True).double().numpy()
    source_feats = predict_logits(model, xs, features=True).double().numpy()[: len(xt)]
    return transferability_scores(
        probs, feats, y, source_feats, permutations=permutations, seed=seed
    )


def depth_ranking(model: GroupedNet, target: Split, realised: Sequence[float]) -> dict[str, float]:
    """Kendall's tau between LogME / H-score of the features after k groups (k = 1..G) and the
    realised accuracy at k."""
    x, y = torch.from_numpy(target.x), target.y
    with torch.inference_mode():
        per_k = [
            model.pool(model.forward_groups(x, 0, k)).double().numpy()
            for k in range(1, model.num_groups + 1)
        ]
    return {
        "logme": kendall_tau([logme(f, y) for f in per_k], realised),
        "h_score": kendall_tau([h_score(f, y) for f in per_k], realised),
    }
