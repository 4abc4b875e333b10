"""Your own labelled images from an ``.npz`` file (e.g. MNIST or USPS exported with numpy).

The file holds ``x``: images (N, H, W), (N, C, H, W) or channels-last (N, H, W, C) with C in
1..4, values in [0, 1] or 0..255; ``y``: integer labels (N,) in 0..C-1; and optionally
``classes``: the class names, index = label. Images are resized to the common resolution and
split stratified into disjoint train/val/test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...] | None]:
    """``x`` as float32 (N, C, H, W) in [0, 1], ``y`` as int64 and the class names, validated."""
    if not path.is_file():
        raise ConfigError(key, str(path), "an existing .npz file")
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
            classes = tuple(str(c) for c in f["classes"]) if "classes" in f.files else None
    except KeyError as err:
        raise DataError(path, f"needs arrays 'x' and 'y' ({err})") from err
    except (OSError, ValueError) as err:
        raise DataError(path, f"not a readable .npz file ({err})") from err
    x = _channels_first(x, path)
    if y.ndim != 1 or len(x) != len(y):
        raise DataError(path, f"y must be (N,) with N = len(x); got x {x.shape}, y {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise DataError(path, "y must hold class indices 0..C-1")
    x = x.astype(np.float32)
    if x.size and x.max() > 1.0:
        x = x / 255.0
    return x, y.astype(np.int64), classes


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
    x, y, classes = load_npz_arrays(Path(path), f"{key}.path")
    x = resize(x, image_size)
    index = stratified_split(y, test_fraction=test_fraction, val_per_class=val_per_class, seed=seed)
    splits = {k: Split(x[i], y[i]) for k, i in index.items()}
    if classes is None:
        classes = tuple(str(c) for c in range(int(y.max()) + 1))
    recipe = {
        "loader": "npz",
        "path": str(path),
        "seed": seed,
        "test_fraction": test_fraction,
        "val_per_class": val_per_class,
    }
    return Domain(name, classes, splits, recipe)
