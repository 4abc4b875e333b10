"""Input validation shared by the transferability scores (LEEP, LogME, H-score)."""

from __future__ import annotations

import numpy as np


def features_and_labels(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    names: tuple[str, str] = ("features", "labels"),
) -> tuple[np.ndarray, np.ndarray]:
    """Validate (features, labels); return float64 features (n, D) and int64 labels (n,).

    Args:
        features: Per-sample rows, shape (n, D).
        labels: Class indices, shape (n,).
        names: The two arguments' names as the caller's users know them, for the messages.

    Raises:
        ValueError: Empty or non-2-D features, non-finite values, labels of another length or
            not non-negative integers.
    """
    x_name, y_name = names
    feats = np.asarray(features)
    labs = np.asarray(labels)
    if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
        raise ValueError(
            f"{x_name} must be a non-empty 2-D array of shape (n, D), got shape {feats.shape}"
        )
    feats = feats.astype(np.float64)
    if not np.all(np.isfinite(feats)):
        raise ValueError(f"{x_name} must be finite (no NaN or inf)")
    if labs.ndim != 1 or labs.shape[0] != feats.shape[0]:
        raise ValueError(
            f"{y_name} must be a 1-D array of the same length as {x_name} "
            f"({feats.shape[0]}), got shape {labs.shape}"
        )
    if not np.issubdtype(labs.dtype, np.integer) or labs.min() < 0:
        raise ValueError(f"{y_name} must be non-negative integers (class indices)")
    return feats, labs.astype(np.int64)
