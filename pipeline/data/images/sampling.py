"""Seeded, stratified index sets for datasets read from disk: splits carved here, and samples.

Datasets that come with some splits of their own (MNIST's test set, a ``train/`` folder without
``val/``) need only the missing ones carved from train; :func:`carve` does either or both, the
latter exactly as :func:`pipeline.data.splits.stratified_split`.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from pipeline.data.domain import Split
from pipeline.data.images.decode import Decoded
from pipeline.data.splits import stratified_split
from pipeline.errors import ConfigError


def carve(
    y: np.ndarray,
    seed: int,
    *,
    test_fraction: float | None,
    val_per_class: int | None,
    key: str = "data.target",
    source: object | None = None,
) -> dict[str, np.ndarray]:
    """Row indices of train plus the splits asked for (``test``: a stratified share; ``val``:
    ``val_per_class`` rows of every class), disjoint and sorted; ``source`` (the folder or file)
    names the data in messages."""
    if test_fraction is not None and val_per_class is not None:
        return stratified_split(
            y,
            test_fraction=test_fraction,
            val_per_class=val_per_class,
            seed=seed,
            key=key,
            source=source,
        )
    rows = np.arange(len(y))
    if test_fraction is not None:
        if not 0 < test_fraction < 1:
            raise ConfigError(f"{key}.test_fraction", test_fraction, "a number in (0, 1)")
        train, test = train_test_split(rows, test_size=test_fraction, stratify=y, random_state=seed)
        return {"train": np.sort(train), "test": np.sort(test)}
    if val_per_class is None:
        return {"train": rows}
    counts = np.bincount(y)
    if not 1 <= val_per_class < counts.min():
        raise ConfigError(
            f"{key}.val_per_class", val_per_class, f"an integer in [1, {counts.min() - 1}]"
        )
    rng = np.random.default_rng(seed)
    val = np.concatenate(
        [rng.choice(rows[y == c], val_per_class, replace=False) for c in range(len(counts))]
    )
    return {"train": np.setdiff1d(rows, val), "val": np.sort(val)}


def subsample(y: np.ndarray, max_rows: int | None, seed: int, key: str) -> np.ndarray:
    """Sorted row indices of a seeded sample of at most ``max_rows`` rows, stratified by ``y``
    (all rows when ``max_rows`` is None or not smaller than ``len(y)``)."""
    if max_rows is None or max_rows >= len(y):
        return np.arange(len(y))
    classes = len(np.unique(y))
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < classes:
        raise ConfigError(key, max_rows, f"null or an integer >= {classes} (one per class)")
    keep, _ = train_test_split(
        np.arange(len(y)), train_size=max_rows, stratify=y, random_state=seed
    )
    return np.sort(keep)


def split_decoded(
    parts: dict[str, Decoded],
    seed: int,
    test_fraction: float,
    val_per_class: int,
    key: str,
    source: object | None = None,
) -> dict[str, Split]:
    """train/val/test splits of images in [0, 1]: the ones given in ``parts`` as they are, the
    missing ones carved from ``parts["train"]`` (test first, then val from what is left)."""
    train = parts["train"]
    index = carve(
        train.y,
        seed,
        test_fraction=None if "test" in parts else test_fraction,
        val_per_class=None if "val" in parts else val_per_class,
        key=key,
        source=source,
    )
    out = {k: Split(train.x[i].astype(np.float32) / 255, train.y[i]) for k, i in index.items()}
    for split in ("val", "test"):
        if split in parts:
            out[split] = Split(parts[split].x.astype(np.float32) / 255, parts[split].y)
    return {k: out[k] for k in ("train", "val", "test")}
