"""Negative Conditional Entropy (NCE).

Tran, Nguyen and Hassner, "Transferability and Hardness of Supervised Classification Tasks",
ICCV 2019.

With ``Z`` the source model's hard (argmax) predictions on the target samples and ``Y`` the
target labels, the empirical joint over the ``n`` samples is

    P(y, z) = #{i : y_i = y, z_i = z} / n,    P(z) = sum_y P(y, z)

and the score is

    NCE = -H(Y | Z) = sum_{y, z} P(y, z) * log( P(y, z) / P(z) ).

NCE is <= 0, equals 0 exactly when Y is a function of Z, and is invariant to relabelling either
variable. Natural logarithm (nats).
"""

from __future__ import annotations

import numpy as np


def _as_int_labels(values: np.ndarray, name: str) -> np.ndarray:
    """Return ``values`` as a 1-D integer array or raise ValueError naming ``name``."""
    labels = np.asarray(values)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must contain integers (class indices), got dtype {labels.dtype}")
    return labels


def nce(source_labels: np.ndarray, target_labels: np.ndarray) -> float:
    """Compute the NCE transferability score.

    Args:
        source_labels: Hard (argmax) predictions of the source model on the target samples,
            integer class indices of shape (n,).
        target_labels: Integer target labels of shape (n,).

    Returns:
        The NCE score, a float <= 0 (higher is better).

    Raises:
        ValueError: If either array is not a non-empty 1-D integer array or the lengths differ.
    """
    z = _as_int_labels(source_labels, "source_labels")
    y = _as_int_labels(target_labels, "target_labels")
    if z.shape != y.shape:
        raise ValueError(
            f"source_labels and target_labels must have the same length, got {z.shape[0]} "
            f"and {y.shape[0]}"
        )
    _, z_idx = np.unique(z, return_inverse=True)
    y_values, y_idx = np.unique(y, return_inverse=True)
    n_y = y_values.shape[0]
    counts = np.bincount(z_idx * n_y + y_idx, minlength=(int(z_idx.max()) + 1) * n_y)
    joint = counts.reshape(-1, n_y) / z.shape[0]  # (Z, Y): P(z, y)
    marginal = joint.sum(axis=1, keepdims=True)  # (Z, 1): P(z); > 0 for every observed z
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log((joint / marginal)[nonzero])))
