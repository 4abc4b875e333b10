"""Your own labelled images from an ``.npz`` file (e.g. MNIST or USPS exported with numpy).

The file holds ``x`` (N, H, W) or (N, 1, H, W) with values in [0, 1] or 0..255, and integer
labels ``y`` (N,) in 0..C-1. Images are resized like the built-in target and split stratified
into disjoint train/val/test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.domain import Domain, Split
from pipeline.data.sklearn_digits import resize
from pipeline.data.splits import stratified_split
from pipeline.errors import ConfigError, GraftlabError


def load_npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``x`` as float32 (N, 1, H, W) in [0, 1] and ``y`` as int64, validated."""
    if not path.is_file():
        raise ConfigError("data.target.path", str(path), "an existing .npz file")
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
    except KeyError as err:
        raise GraftlabError(f"{path}: needs arrays 'x' and 'y' ({err})") from err
    except (OSError, ValueError) as err:
        raise GraftlabError(f"{path}: not a readable .npz file ({err})") from err
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1 or len(x) != len(y):
        raise GraftlabError(
            f"{path}: x must be (N, H, W) or (N, 1, H, W) with N = len(y); "
            f"got x {x.shape}, y {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise GraftlabError(f"{path}: y must hold class indices 0..C-1")
    x = x.astype(np.float32)
    if x.max() > 1.0:
        x = x / 255.0
    return x, y.astype(np.int64)


def make_npz_domain(
    *, image_size: int, seed: int, path: str, name: str, test_fraction: float, val_per_class: int
) -> Domain:
    """A target domain from an ``.npz`` file; see the module docstring for the format."""
    x, y = load_npz_arrays(Path(path))
    x = resize(x, image_size)
    index = stratified_split(y, test_fraction=test_fraction, val_per_class=val_per_class, seed=seed)
    splits = {k: Split(x[i], y[i]) for k, i in index.items()}
    classes = tuple(str(c) for c in range(int(y.max()) + 1))
    recipe = {
        "loader": "npz",
        "path": str(path),
        "seed": seed,
        "test_fraction": test_fraction,
        "val_per_class": val_per_class,
    }
    return Domain(name, classes, splits, recipe)
