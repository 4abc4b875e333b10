"""Input validation shared by the feature-based transferability scores (LogME, H-score)."""

from __future__ import annotations

import numpy as np


def features_and_labels(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate (features, labels); return float64 features (n, D) and int64 labels (n,).

    Raises:
        ValueError: Empty or non-2-D features, non-finite values, labels of another length or
            not non-negative integers.
    """
    feats = np.asarray(features)
    labs = np.asarray(labels)
    if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
        raise ValueError(
            f"features must be a non-empty 2-D array of shape (n, D), got shape {feats.shape}"
        )
    feats = feats.astype(np.float64)
    if not np.all(np.isfinite(feats)):
        raise ValueError("features must be finite (no NaN or inf)")
    if labs.ndim != 1 or labs.shape[0] != feats.shape[0]:
        raise ValueError(
            "labels must be a 1-D array of the same length as features "
            f"({feats.shape[0]}), got shape {labs.shape}"
        )
    if not np.issubdtype(labs.dtype, np.integer) or labs.min() < 0:
        raise ValueError("labels must be non-negative integers (class indices)")
    return feats, labs.astype(np.int64)
