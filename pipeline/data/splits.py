"""Stratified splits and label budgets.

Val and test are carved out first, so a label budget only ever picks from the training rows and
can never leak evaluation data into training.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.errors import ConfigError


def stratified_split(
    y: np.ndarray, *, test_fraction: float, val_per_class: int, seed: int
) -> dict[str, np.ndarray]:
    """Split row indices into disjoint, stratified train/val/test index arrays.

    Test takes a stratified ``test_fraction`` of every class; val exactly ``val_per_class`` of
    every class from the rest; train is what remains.

    Args:
        y: Labels, shape (N,).
        test_fraction: Share of all rows held out for test, in (0, 1).
        val_per_class: Validation rows per class.
        seed: Random seed.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``, each sorted.
    """
    if not 0 < test_fraction < 1:
        raise ConfigError("data.target.test_fraction", test_fraction, "a number in (0, 1)")
    num_classes = int(y.max()) + 1
    rest, test = train_test_split(
        np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=seed
    )
    smallest = int(np.bincount(y[rest], minlength=num_classes).min())
    if not 1 <= val_per_class < smallest:
        raise ConfigError(
            "data.target.val_per_class", val_per_class, f"an integer in [1, {smallest - 1}]"
        )
    rng = np.random.default_rng(seed)
    val = np.concatenate(
        [rng.choice(rest[y[rest] == c], val_per_class, replace=False) for c in range(num_classes)]
    )
    train = np.setdiff1d(rest, val)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def label_budget(
    y: np.ndarray, labels_per_class: int, seed: int, key: str = "data.labels_per_class"
) -> np.ndarray:
    """Pick ``labels_per_class`` rows of every class, as a seeded, sorted index array.

    The same (labels, seed) always gives the same subset, so arms that share a seed are trained
    on exactly the same labelled examples (paired comparison).

    Args:
        y: Labels of the rows to pick from.
        labels_per_class: Rows per class.
        seed: Random seed.
        key: The config key of ``labels_per_class``, for the error message.

    Raises:
        ConfigError: ``labels_per_class`` is not an integer in [1, smallest class].
    """
    counts = np.bincount(y)
    if isinstance(labels_per_class, bool) or not isinstance(labels_per_class, int | np.integer):
        raise ConfigError(key, labels_per_class, "a positive integer")
    if not 1 <= labels_per_class <= counts.min():
        raise ConfigError(
            key,
            labels_per_class,
            f"an integer in [1, {counts.min()}] (the smallest class of the split it draws from "
            f"has {counts.min()} rows)",
        )
    rng = np.random.default_rng(seed)
    picks = [
        rng.choice(np.flatnonzero(y == c), labels_per_class, replace=False)
        for c in range(len(counts))
    ]
    return np.sort(np.concatenate(picks))
