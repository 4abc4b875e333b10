"""Log Expected Empirical Prediction (LEEP).

Nguyen, Hassner, Seeger and Archambeau, "LEEP: A New Measure to Evaluate Transferability of
Learned Representations", ICML 2020.

Given the source model's softmax outputs ``theta(x_i)`` over its ``Z`` source classes on the
``n`` target samples and the target labels ``y_i`` in ``[0, C)``:

    P(y, z)   = 1/n * sum_{i : y_i = y} theta(x_i)_z        (empirical joint)
    P(z)      = sum_y P(y, z)
    P(y | z)  = P(y, z) / P(z)
    LEEP      = 1/n * sum_i log( sum_z P(y_i | z) * theta(x_i)_z )

LEEP is always <= 0 (the inner sum is a convex combination of probabilities); values closer to 0
predict better transfer.
"""

from __future__ import annotations

import numpy as np

from pipeline.metrics._inputs import features_and_labels

_ROW_SUM_ATOL = 1e-4


def _check_inputs(
    source_probs: np.ndarray, target_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert the inputs of :func:`leep`.

    Args:
        source_probs: Source-model probabilities, shape (n, Z).
        target_labels: Target labels, shape (n,).

    Returns:
        The probabilities as float64 (n, Z) and the labels as int64 (n,).

    Raises:
        ValueError: If shapes, values or dtypes are not allowed.
    """
    probs, labels = features_and_labels(
        source_probs, target_labels, names=("source_probs", "target_labels")
    )
    if probs.min() < 0:
        raise ValueError("source_probs must be non-negative")
    if not np.allclose(probs.sum(axis=1), 1.0, rtol=0.0, atol=_ROW_SUM_ATOL):
        raise ValueError(
            f"source_probs rows must sum to 1 (softmax outputs) within {_ROW_SUM_ATOL}"
        )
    return probs, labels


def leep(source_probs: np.ndarray, target_labels: np.ndarray) -> float:
    """Compute the LEEP transferability score.

    Args:
        source_probs: Softmax outputs of the source model on the target data, shape (n, Z);
            each row must be non-negative and sum to 1.
        target_labels: Integer target labels in [0, C), shape (n,).

    Returns:
        The LEEP score, a float <= 0 (higher is better).

    Raises:
        ValueError: If the shapes do not match, the labels are not non-negative integers, or the
            rows of ``source_probs`` are not probability vectors.
    """
    probs, labels = _check_inputs(source_probs, target_labels)
    n = probs.shape[0]
    n_classes = int(labels.max()) + 1
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), labels] = 1.0
    joint = onehot.T @ probs / n  # (C, Z): P(y, z)
    marginal = joint.sum(axis=0, keepdims=True)  # (1, Z): P(z)
    # A source class with zero total mass has theta_z = 0 everywhere, so its column never counts:
    # it is divided by 1, not 0, so its zeros need no out= buffer to stay zeros
    conditional = joint / np.where(marginal > 0, marginal, 1.0)
    eep = np.einsum("iz,iz->i", probs, conditional[labels])  # sum_z P(y_i|z) theta(x_i)_z
    return float(np.mean(np.log(eep)))
