"""All transferability and domain-similarity scores of one source model on one target, at once.

Computed from the source model before any target training: its softmax outputs and penultimate
features on the target training data (LEEP, NCE, LogME, H-score) and its features on source vs
target images (proxy A-distance, MMD^2 with a permutation test).
"""

from __future__ import annotations

import numpy as np

from pipeline.metrics.domain import mmd_permutation_test, proxy_a_distance
from pipeline.metrics.hscore import h_score
from pipeline.metrics.leep import leep
from pipeline.metrics.logme import logme
from pipeline.metrics.nce import nce

READS = {
    "leep": "higher = more transferable (<= 0)",
    "nce": "higher = more transferable (<= 0)",
    "logme": "higher = more transferable",
    "h_score": "higher = more transferable",
    "proxy_a_distance": "0 = same domain .. 2 = separable",
    "mmd2": "0 = same distribution",
    "mmd_p_value": "small = domains differ",
}


def transferability_scores(
    source_probs: np.ndarray,
    target_features: np.ndarray,
    target_labels: np.ndarray,
    source_domain_features: np.ndarray,
    *,
    permutations: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """Every score, keyed as in :data:`READS`.

    Args:
        source_probs: Source-head softmax on target training images, (n, Z).
        target_features: Source-model penultimate features of the same images, (n, D).
        target_labels: Their target labels, (n,).
        source_domain_features: Source-model features of source-domain images, (m, D).
        permutations: Permutations of the MMD test.
        seed: Seed of PAD's split and the permutations.
    """
    y = np.asarray(target_labels)
    mmd2, p = mmd_permutation_test(
        source_domain_features, target_features, n_permutations=permutations, seed=seed
    )
    return {
        "leep": leep(source_probs, y),
        "nce": nce(source_probs.argmax(axis=1), y),
        "logme": logme(target_features, y),
        "h_score": h_score(target_features, y),
        "proxy_a_distance": proxy_a_distance(source_domain_features, target_features, seed=seed),
        "mmd2": mmd2,
        "mmd_p_value": p,
    }
