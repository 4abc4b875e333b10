"""Target domain: the 1,797 real 8x8 handwritten digit scans bundled with scikit-learn.

The UCI "Optical Recognition of Handwritten Digits" set (Alpaydin & Kaynak, 1998), as shipped in
``sklearn.datasets.load_digits``: no download. Pixel values 0..16 are scaled to [0, 1] and the
images resized (bilinear) to the common resolution.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.domain import Domain, Split
from pipeline.data.splits import stratified_split


def resize(x: np.ndarray, image_size: int) -> np.ndarray:
    """Resize images (N, C, H, W) to (N, C, image_size, image_size), bilinear with antialiasing."""
    if x.shape[-1] == image_size and x.shape[-2] == image_size:
        return x.astype(np.float32)
    t = torch.from_numpy(x.astype(np.float32))
    out = F.interpolate(t, size=(image_size, image_size), mode="bilinear", antialias=True)
    return out.clamp(0, 1).numpy()


def make_sklearn_digits(
    *, image_size: int, seed: int, test_fraction: float, val_per_class: int
) -> Domain:
    """Load scikit-learn's digits and split them into stratified, disjoint train/val/test.

    Args:
        image_size: Output resolution.
        seed: Seed of the split.
        test_fraction: Share of all images held out for test.
        val_per_class: Validation images per class.
    """
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = resize(raw.images[:, None].astype(np.float32) / 16.0, image_size)
    y = raw.target.astype(np.int64)
    index = stratified_split(y, test_fraction=test_fraction, val_per_class=val_per_class, seed=seed)
    splits = {name: Split(x[i], y[i]) for name, i in index.items()}
    recipe = {
        "loader": "sklearn.datasets.load_digits",
        "seed": seed,
        "test_fraction": test_fraction,
        "val_per_class": val_per_class,
        "resize": "bilinear, antialias",
    }
    return Domain("sklearn_digits", tuple(str(d) for d in range(10)), splits, recipe)
