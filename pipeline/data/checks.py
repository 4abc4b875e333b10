"""What a dataset must satisfy before anything trains on it, checked once where data enters.

A loader's arrays (:func:`class_labels`) and every built or loaded :class:`Domain`
(:func:`check_domain`) are checked here, so bad data stops the prepare stage with one line naming
the file, instead of NaN losses, a torchmetrics traceback in evaluate or a label-budget range of
"[1, -1]" later:

- inputs are real numbers and finite (no NaN or infinity);
- labels are integer class indices; labels with gaps ({0..4, 6..9, 11}) are mapped onto
  0..C-1, keeping their names;
- there are at least two classes, and every class has an example in every labelled split.
"""

from __future__ import annotations

import numpy as np

from pipeline.data.domain import Domain
from pipeline.errors import DataError


def check_inputs(x: np.ndarray, where: object, what: str = "x") -> None:
    """Real, finite numbers, at least one example.

    Raises:
        DataError: Empty, non-numeric (strings, objects, complex) or NaN/infinite values.
    """
    if x.ndim < 1 or len(x) == 0:
        raise DataError(where, f"{what} holds no examples (shape {x.shape})")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(where, f"{what} must hold numbers; got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(where, f"{what} must hold real numbers; got dtype {x.dtype}")
    if np.issubdtype(x.dtype, np.floating):
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise DataError(
                where, f"{what} holds NaN or infinite values in {int(bad.sum())} of {len(x)} rows"
            )


def class_labels(
    y: np.ndarray, names: tuple[str, ...] | None, where: object
) -> tuple[np.ndarray, tuple[str, ...], dict[str, int]]:
    """Labels as indices 0..C-1 of the classes that occur, with their names.

    Args:
        y: Integer labels, shape (N,).
        names: Class names indexed by the original label, or None (names are the labels).
        where: The file or config key, for messages.

    Returns:
        ``(y, names, mapping)``: labels 0..C-1 (int64), the C names of the classes that occur,
        and the original label of each name where that is not its index (labels with gaps,
        not starting at 0, or named classes without examples), else empty.

    Raises:
        DataError: Not integers, negative, a label without a name, duplicate names, or fewer
            than two classes.
    """
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(where, f"y must be integer class indices (N,); got {y.dtype} {y.shape}")
    if len(y) and y.min() < 0:
        raise DataError(where, f"y must hold class indices >= 0; found {int(y.min())}")
    used = np.unique(y)
    if len(used) < 2:
        raise DataError(where, f"y holds {len(used)} class(es); at least 2 are needed")
    if names is not None:
        if int(used[-1]) >= len(names):
            raise DataError(where, f"label {int(used[-1])} has no name in classes ({len(names)})")
        if len(set(names)) != len(names):
            raise DataError(where, "classes must be distinct names")
    kept = tuple(str(names[u]) if names is not None else str(u) for u in used)
    identity = int(used[-1]) == len(used) - 1 and (names is None or len(names) == len(used))
    mapping = {} if identity else {name: int(u) for name, u in zip(kept, used, strict=True)}
    return np.searchsorted(used, y).astype(np.int64), kept, mapping


def check_domain(domain: Domain, where: object) -> None:
    """Raise :class:`DataError` naming ``where`` if ``domain`` cannot be trained or scored on."""
    if domain.num_classes < 2:
        raise DataError(where, f"has {domain.num_classes} class(es); at least 2 are needed")
    if "train" not in domain.splits:
        raise DataError(where, f"has no train split (splits: {sorted(domain.splits)})")
    shapes = {split.x.shape[1:] for split in domain.splits.values()}
    if len(shapes) > 1:
        raise DataError(where, f"splits hold inputs of different shapes {sorted(shapes)}")
    for name, split in domain.splits.items():
        check_inputs(split.x, where, f"split '{name}'")
        if split.y is None:
            continue
        y = split.y
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(where, f"split '{name}' labels must be integers; got {y.dtype}")
        if y.min() < 0 or y.max() >= domain.num_classes:
            raise DataError(where, f"split '{name}' has labels outside 0..{domain.num_classes - 1}")
        missing = np.flatnonzero(np.bincount(y, minlength=domain.num_classes) == 0)
        if len(missing):
            absent = [domain.classes[i] for i in missing[:5]]
            raise DataError(
                where,
                f"split '{name}' has no example of class(es) {absent}: every class needs one "
                "in every split (more data, or smaller val/test shares)",
            )
