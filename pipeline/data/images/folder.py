"""Your own images in torchvision's ``ImageFolder`` layout: one folder per class.

``root/<class>/<image>`` (layout ``classes``: split stratified into train/val/test here) or
``root/{train,val,test}/<class>/<image>`` (layout ``splits``: your own splits; a missing val or
test split is carved from train). Class names are the folder names, in torchvision's (sorted)
order. Images of any size and of any 8-bit mode (grayscale, RGB, palette, with alpha) are
converted to the declared channel count and size and decoded once into a cache
(:mod:`pipeline.data.images.decode`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.data.domain import Domain
from pipeline.data.images.decode import DecodeCache, Decoded, check_memory, decode, file_stats
from pipeline.data.images.sampling import split_decoded, subsample
from pipeline.errors import ConfigError, DataError

LAYOUTS = ("classes", "splits")
SPLIT_FOLDERS = ("train", "val", "test")


def _open(path: str) -> object:
    from PIL import Image

    return Image.open(path)  # decoded (and checked) in the worker, with the file named on error


def image_folder(root: Path, key: str) -> object:
    """torchvision's ``ImageFolder`` over ``root``, with every class folder holding images.

    Raises:
        DataError: ``root`` is missing, has no class folders, or a class folder has no images.
    """
    from torchvision.datasets import ImageFolder

    if not root.is_dir():
        raise DataError(root, f"not a folder ({key}.root): expected <root>/<class>/<image> files")
    try:
        dataset = ImageFolder(str(root), loader=_open, allow_empty=True)
    except FileNotFoundError as err:
        problem = f"no class folders in it: expected <root>/<class>/<image> ({err})"
        raise DataError(root, problem) from err
    counts = np.bincount(dataset.targets, minlength=len(dataset.classes))
    for name, count in zip(dataset.classes, counts, strict=True):
        if count == 0:
            raise DataError(
                root / name, "empty class folder: no image files (.png, .jpg, .bmp, .tif, ...)"
            )
    return dataset


def read_folder(
    root: Path,
    *,
    channels: int,
    image_size: int,
    key: str,
    cache: DecodeCache,
    workers: int,
    max_images: int | None = None,
    seed: int = 0,
) -> Decoded:
    """Decode (or read from ``cache``) every image under ``root`` (one folder per class)."""
    from torch.utils.data import Subset

    dataset = image_folder(root, key)
    files = [str(Path(p).relative_to(root)) for p, _ in dataset.samples]
    keep = subsample(np.asarray(dataset.targets), max_images, seed, f"{key}.max_images")
    files = [files[i] for i in keep]
    check_memory(len(keep), (channels, image_size, image_size), root, key)
    recipe = {
        "reader": "torchvision.datasets.ImageFolder",
        "root": str(root.resolve()),
        "files": file_stats(root, files),
        "channels": channels,
        "size": image_size,
    }

    def make() -> Decoded:
        x, y = decode(
            Subset(dataset, keep.tolist()),
            channels=channels,
            size=image_size,
            name_of=lambda i: root / files[i],
            workers=workers,
        )
        return Decoded(x, y, tuple(dataset.classes), tuple(files))

    return cache.get(recipe, make)[0]


def make_imagefolder_domain(
    *,
    root: str,
    image_size: int,
    channels: int,
    seed: int,
    name: str | None = None,
    layout: str = "classes",
    test_fraction: float = 0.4,
    val_per_class: int = 20,
    max_images: int | None = None,
    workers: int = 2,
    cache: str | None = None,
    key: str = "data.target",
) -> Domain:
    """A labelled image domain from a folder tree; see the module docstring for the layouts.

    Args:
        root: The folder.
        image_size: Output height and width (images of other sizes are resized, aspect ignored).
        channels: 1 (grayscale) or 3 (RGB); every image is converted to it.
        seed: Seed of the split and of ``max_images``' sample.
        name: Dataset name in reports and MLflow (default: the folder's name).
        layout: ``classes`` or ``splits`` (see the module docstring).
        test_fraction: Share held out for test when the split is made here.
        val_per_class: Validation images per class when the split is made here.
        max_images: Read at most this many images per folder (a seeded stratified sample).
        workers: Decoding worker processes.
        cache: Decode cache folder (None: decode every time).
        key: Config key of this dataset, for error messages.
    """
    path = Path(root)
    if layout not in LAYOUTS:
        raise ConfigError(f"{key}.layout", layout, LAYOUTS)
    if channels not in (1, 3):
        raise ConfigError(f"{key}.channels", channels, "1 (grayscale) or 3 (RGB)")
    store = DecodeCache(cache)
    read = {
        "channels": channels,
        "image_size": image_size,
        "key": key,
        "cache": store,
        "workers": workers,
        "max_images": max_images,
        "seed": seed,
    }
    if layout == "classes":
        parts = {"train": read_folder(path, **read)}
    else:
        parts = _split_folders(path, read, key)
    split_data = split_decoded(parts, seed, test_fraction, val_per_class, key, path)
    recipe = {
        "loader": "torchvision.datasets.ImageFolder",
        "root": str(path),
        "layout": layout,
        "channels": channels,
        "files": sum(len(p.files) for p in parts.values()),
        "seed": seed,
        "test_fraction": test_fraction,
        "val_per_class": val_per_class,
        "max_images": max_images,
        "resize": "PIL bilinear, antialiased, to a square",
    }
    return Domain(name or path.name, parts["train"].classes, split_data, recipe)


def _split_folders(root: Path, read: dict, key: str) -> dict[str, Decoded]:
    if not (root / "train").is_dir():
        raise DataError(root, "layout 'splits' needs a train/ folder (and optionally val/, test/)")
    parts = {s: read_folder(root / s, **read) for s in SPLIT_FOLDERS if (root / s).is_dir()}
    for split, part in parts.items():
        if part.classes != parts["train"].classes:
            only = sorted(set(part.classes) ^ set(parts["train"].classes))
            raise DataError(
                root / split, f"class folders differ from train/ ({only}); {key} needs the same"
            )
    return parts
