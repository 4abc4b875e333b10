"""Target domain: the 1,797 real 8x8 handwritten digit scans bundled with scikit-learn.

The UCI "Optical Recognition of Handwritten Digits" set (Alpaydin & Kaynak, 1998), as shipped in
``sklearn.datasets.load_digits``: no download. Pixel values 0..16 are scaled to [0, 1] and the
images resized (bilinear) to the common resolution.
"""

from __future__ import annotations

import numpy as np

from pipeline.data.domain import Domain, Split
from pipeline.data.images.transforms import resize
from pipeline.data.splits import stratified_split


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
