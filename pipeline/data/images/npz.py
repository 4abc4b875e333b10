"""Your own labelled images from an ``.npz`` file (e.g. MNIST or USPS exported with numpy).

The file holds ``x``: images (N, H, W), (N, C, H, W) or channels-last (N, H, W, C) with C in
1..4, finite values in [0, 1] or 0..255; ``y``: integer labels (N,) >= 0; and optionally
``classes``: the class names, index = label. Labels that do not run 0..C-1 (gaps, classes
without examples) are mapped onto 0..C-1 in order, keeping their names; the data card's recipe
records the map. Images are resized to the common resolution and split stratified into disjoint
train/val/test; a file that cannot be read or used stops with one line naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.checks import check_inputs, class_labels
from pipeline.data.domain import Domain, Split
from pipeline.data.images.transforms import resize
from pipeline.data.splits import stratified_split
from pipeline.errors import ConfigError, DataError

_CHANNELS = (1, 2, 3, 4)


def _channels_first(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] in _CHANNELS:
        return x
    if x.ndim == 4 and x.shape[-1] in _CHANNELS:
        return np.moveaxis(x, -1, 1)
    raise DataError(
        path, f"x must be images (N, H, W), (N, C, H, W) or (N, H, W, C); got {x.shape}"
    )


def load_npz_arrays(
    path: Path, key: str = "data.target.path"
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], dict[str, int]]:
    """``x`` as float32 (N, C, H, W) in [0, 1], labels 0..C-1, class names and the label map
    (:func:`pipeline.data.checks.class_labels`), every problem named with the file."""
    if not path.is_file():
        raise ConfigError(key, str(path), "an existing .npz file")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = sorted({"x", "y"} - set(f.files))
            if missing:
                raise DataError(path, f"needs arrays 'x' and 'y'; missing {missing}")
            x, y = f["x"], f["y"]
            names = f["classes"] if "classes" in f.files else None
    except DataError:
        raise
    except Exception as err:
        # numpy reports a damaged archive with many types (BadZipFile, EOFError, zlib.error,
        # ValueError, OSError, ...): whatever it is, the file is what the user must fix
        raise DataError(path, f"not a readable .npz file ({type(err).__name__}: {err})") from err
    if names is not None and names.ndim != 1:
        raise DataError(path, f"classes must be a list of names; got shape {names.shape}")
    check_inputs(x, path)
    x = _channels_first(x, path)
    if min(x.shape[2:]) < 1:
        raise DataError(path, f"x images must be at least 1x1 pixels; got {x.shape}")
    if len(y) != len(x):
        raise DataError(path, f"y must be (N,) with N = len(x); got x {x.shape}, y {y.shape}")
    y, classes, mapping = class_labels(
        y, None if names is None else tuple(str(c) for c in names), path
    )
    x = x.astype(np.float32)
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 255:
        raise DataError(path, f"x values must lie in [0, 1] or 0..255; found [{low}, {high}]")
    if high > 1.0:
        x = x / 255.0
    return x, y, classes, mapping


def make_npz_domain(
    *,
    image_size: int,
    seed: int,
    path: str,
    name: str,
    test_fraction: float,
    val_per_class: int,
    key: str = "data.target",
) -> Domain:
    """A domain from an ``.npz`` file; see the module docstring for the format."""
    x, y, classes, mapping = load_npz_arrays(Path(path), f"{key}.path")
    x = resize(x, image_size)
    index = stratified_split(
        y,
        test_fraction=test_fraction,
        val_per_class=val_per_class,
        seed=seed,
        key=key,
        source=path,
    )
    splits = {k: Split(x[i], y[i]) for k, i in index.items()}
    recipe = {
        "loader": "npz",
        "path": str(path),
        "seed": seed,
        "test_fraction": test_fraction,
        "val_per_class": val_per_class,
    }
    if mapping:
        recipe["label_map"] = mapping  # class name -> label in the file
    return Domain(name, classes, splits, recipe)
