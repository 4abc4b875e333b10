"""The transferability and domain-similarity scores of one network on one target, at once.

Label scores read the network's softmax outputs and penultimate features on *labelled* target
images (LEEP, NCE, LogME, shrinkage H-score), so they only ever see the images a label budget
allows.
Domain scores compare its features on source and target images, which needs no labels (proxy
A-distance, MMD^2 with a permutation test), on samples of equal size: PAD's classifier would
otherwise learn the size imbalance (600 vs 878 rows put its null value at 0.15 instead of ~0).
"""

from __future__ import annotations

import numpy as np

from pipeline.metrics.domain import mmd_permutation_test, proxy_a_distance
from pipeline.metrics.hscore import h_score
from pipeline.metrics.leep import leep
from pipeline.metrics.logme import logme
from pipeline.metrics.nce import nce

LABEL_READS = {
    "leep": "higher = more transferable (<= 0)",
    "nce": "higher = more transferable (<= 0)",
    "logme": "higher = more transferable",
    "h_score": "higher = more transferable",
}
DOMAIN_READS = {
    "proxy_a_distance": "0 = same domain .. 2 = separable",
    "mmd2": "0 = same distribution",
    "mmd_p_value": "small = domains differ",
}
READS = {**LABEL_READS, **DOMAIN_READS}


def label_scores(probs: np.ndarray, features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """LEEP, NCE, LogME and H-score of a network on labelled target images.

    Args:
        probs: The network's softmax over its own (source) classes, (n, Z).
        features: Its penultimate features of the same images, (n, D).
        labels: Their target labels, (n,).
    """
    y = np.asarray(labels)
    return {
        "leep": leep(probs, y),
        "nce": nce(probs.argmax(axis=1), y),
        "logme": logme(features, y),
        # the labelled budget is a few images per class: shrinkage keeps H-score informative
        "h_score": h_score(features, y, shrinkage=True),
    }


def equal_samples(
    a: np.ndarray, b: np.ndarray, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random rows of ``a`` and ``b``, the same number from each (at most ``size``)."""
    n = min(len(a), len(b), size)
    rng = np.random.default_rng(seed)
    return a[rng.permutation(len(a))[:n]], b[rng.permutation(len(b))[:n]]


def domain_scores(
    source: np.ndarray, target: np.ndarray, *, permutations: int, seed: int
) -> dict[str, float]:
    """Proxy A-distance and MMD^2 (with its permutation p-value) between two feature samples
    of equal size."""
    mmd2, p = mmd_permutation_test(source, target, n_permutations=permutations, seed=seed)
    return {
        "proxy_a_distance": proxy_a_distance(source, target, seed=seed),
        "mmd2": mmd2,
        "mmd_p_value": p,
    }
