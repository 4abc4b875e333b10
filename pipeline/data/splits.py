"""Stratified splits and label budgets.

Val and test are carved out first, so a label budget only ever picks from the training rows and
can never leak evaluation data into training.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.errors import ConfigError, DataError


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def stratified_split(
    y: np.ndarray,
    *,
    test_fraction: float,
    val_per_class: int,
    seed: int,
    key: str = "data.target",
    source: object | None = None,
) -> dict[str, np.ndarray]:
    """Split row indices into disjoint, stratified train/val/test index arrays.

    Test takes a stratified ``test_fraction`` of every class; val exactly ``val_per_class`` of
    every class from the rest; train is what remains (at least one row of every class).

    Args:
        y: Labels 0..C-1, shape (N,), every class present.
        test_fraction: Share of all rows held out for test, in (0, 1).
        val_per_class: Validation rows per class.
        seed: Random seed.
        key: Config section of the two settings, for messages.
        source: The data (a file, a folder), for messages; default: the labels of ``key``.

    Returns:
        ``{"train": idx, "val": idx, "test": idx}``, each sorted.

    Raises:
        ConfigError: ``test_fraction`` or ``val_per_class`` is out of range for these labels.
        DataError: The labels are too few to split: one class only, or a class with fewer than
            3 rows (a test, a val and a training row).
    """
    if isinstance(test_fraction, bool) or not 0 < test_fraction < 1:
        raise ConfigError(f"{key}.test_fraction", test_fraction, "a number in (0, 1)")
    if not _is_int(val_per_class) or val_per_class < 1:
        raise ConfigError(f"{key}.val_per_class", val_per_class, "an integer >= 1")
    counts = np.bincount(y)
    source = f"the labels of {key}" if source is None else source
    if len(counts) < 2:
        raise DataError(
            source, f"holds 1 class ({len(y)} rows); at least 2 classes are needed to classify"
        )
    if counts.min() < 3:
        raise DataError(
            source,
            f"every class needs at least 3 rows (a test, a val and a training row); class "
            f"counts are {counts.tolist()}",
        )
    try:
        rest, test = train_test_split(
            np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=seed
        )
    except ValueError as err:  # too few rows for a test row of every class, or a training row
        allowed = f"a share that leaves every class a test and a training row ({err})"
        raise ConfigError(f"{key}.test_fraction", test_fraction, allowed) from err
    smallest = int(np.bincount(y[rest], minlength=len(counts)).min())
    if smallest < 2:  # the stratified test share took (nearly) all of a small class
        allowed = f"a share that leaves every class a val and a training row (one keeps {smallest})"
        raise ConfigError(f"{key}.test_fraction", test_fraction, allowed)
    if val_per_class >= smallest:
        allowed = f"an integer in [1, {smallest - 1}] (the smallest class keeps {smallest} rows"
        raise ConfigError(f"{key}.val_per_class", val_per_class, allowed + " after the test split)")
    rng = np.random.default_rng(seed)
    val = np.concatenate(
        [rng.choice(rest[y[rest] == c], val_per_class, replace=False) for c in range(len(counts))]
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
    if not _is_int(labels_per_class):
        raise ConfigError(key, labels_per_class, "a positive integer")
    counts = np.bincount(y)
    smallest = int(counts.min())
    if not 1 <= labels_per_class <= smallest:
        raise ConfigError(
            key,
            labels_per_class,
            f"an integer in [1, {smallest}] (the smallest class of the split it draws from "
            f"has {smallest} rows)",
        )
    rng = np.random.default_rng(seed)
    picks = [
        rng.choice(np.flatnonzero(y == c), labels_per_class, replace=False)
        for c in range(len(counts))
    ]
    return np.sort(np.concatenate(picks))
