"""Small datasets written in the formats users have on disk, for tests (nothing is downloaded).

Each writer puts a few images per class where torchvision (or ImageFolder) expects them, in the
layout read from torchvision's own source: MNIST idx files under <root>/MNIST/raw, USPS bz2
text (libsvm format) under <root>, SVHN .mat files under <root>, CIFAR-10 pickled batches under
<root>/cifar-10-batches-py. torchvision checks the published MD5 sums of the CIFAR and SVHN
files; :func:`trust_written_files` points those sums at the written files (test-only).
"""

from __future__ import annotations

import bz2
import hashlib
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

DIGITS = [str(d) for d in range(10)]


def class_images(
    n_per_class: int, classes: int, size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, size, size) whose brightness pattern depends on the class, and labels."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    x = rng.integers(0, 60, (len(y), size, size))
    for i, c in enumerate(y):
        x[i, : size * (c + 1) // (classes + 1)] += 150  # class = height of a bright band
    return x.clip(0, 255).astype(np.uint8), y


def shapes_folder(
    root: Path,
    per_class: int = 30,
    sizes: Sequence[tuple[int, int]] = ((23, 31), (40, 17), (28, 28)),
    seed: int = 0,
) -> list[str]:
    """A 4-class shapes dataset in ImageFolder layout: circle, square, triangle, cross, drawn in
    grayscale and RGB PNGs of odd sizes. Returns the class names."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    classes = ["circle", "cross", "square", "triangle"]
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            mode = "L" if i % 2 else "RGB"
            bg = tuple(int(v) for v in rng.integers(0, 80, 3))
            fg = tuple(int(v) for v in rng.integers(150, 256, 3))
            img = Image.new("RGB", (w, h), bg)
            d = ImageDraw.Draw(img)
            m = int(rng.integers(2, 5))
            box = (m, m, w - m, h - m)
            if name == "circle":
                d.ellipse(box, fill=fg)
            elif name == "square":
                d.rectangle(box, fill=fg)
            elif name == "triangle":
                d.polygon([(w // 2, m), (m, h - m), (w - m, h - m)], fill=fg)
            else:
                d.line([(m, m), (w - m, h - m)], fill=fg, width=3)
                d.line([(m, h - m), (w - m, m)], fill=fg, width=3)
            img.convert(mode).save(root / name / f"{i:03d}.png")
    return classes


def png_folder(
    root: Path, n_per_class: int, classes: int = 3, size: int = 20, seed: int = 0
) -> None:
    """``root/c<k>/<i>.png`` grayscale images of :func:`class_images`."""
    x, y = class_images(n_per_class, classes, size, seed)
    for i, (img, c) in enumerate(zip(x, y, strict=True)):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(root / f"c{c}" / f"{i:04d}.png")


def _idx(path: Path, a: np.ndarray) -> None:
    """An idx file (big-endian header: magic 0x0000 08 <ndim>, then the dimensions)."""
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    path.write_bytes(header + a.astype(np.uint8).tobytes())


def mnist_root(root: Path, n_per_class: int = 6, seed: int = 0, name: str = "MNIST") -> Path:
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, s in (("train", seed), ("t10k", seed + 1)):
        x, y = class_images(n_per_class, 10, 28, s)
        _idx(raw / f"{prefix}-images-idx3-ubyte", x)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    return root


def usps_root(root: Path, n_per_class: int = 6, seed: int = 0) -> Path:
    """usps.bz2 / usps.t.bz2: lines ``label i:v ...`` with label 1..10 and v in [-1, 1]."""
    root.mkdir(parents=True, exist_ok=True)
    for name, s in (("usps.bz2", seed), ("usps.t.bz2", seed + 1)):
        x, y = class_images(n_per_class, 10, 16, s)
        v = x.reshape(len(x), -1) / 255 * 2 - 1
        lines = [
            f"{c + 1} " + " ".join(f"{j + 1}:{p:.6f}" for j, p in enumerate(row))
            for row, c in zip(v, y, strict=True)
        ]
        with bz2.open(root / name, "wt") as f:
            f.write("\n".join(lines) + "\n")
    return root


def svhn_root(root: Path, n_per_class: int = 6, seed: int = 0) -> Path:
    """train_32x32.mat / test_32x32.mat: X (32, 32, 3, N) uint8, y (N, 1) with 10 for digit 0."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    for name, s in (("train_32x32.mat", seed), ("test_32x32.mat", seed + 1)):
        x, y = class_images(n_per_class, 10, 32, s)
        rgb = np.stack([x, x[:, ::-1], x], axis=-1)  # (N, 32, 32, 3)
        savemat(
            root / name, {"X": rgb.transpose(1, 2, 3, 0), "y": np.where(y == 0, 10, y)[:, None]}
        )
    return root


def cifar10_root(root: Path, n_per_class: int = 2, seed: int = 0) -> Path:
    """cifar-10-batches-py/: data_batch_1..5 and test_batch (pickled dicts of ``data`` (N, 3072)
    uint8 rows, channels-first, and ``labels``) and batches.meta (``label_names``)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(batches):
        x, y = class_images(n_per_class, 10, 32, seed + i)
        rgb = np.stack([x, x, x[:, ::-1]], axis=1).reshape(len(x), -1)
        with (folder / name).open("wb") as f:
            pickle.dump({"data": rgb, "labels": y.tolist()}, f)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": names}, f)
    return root


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def trust_written_files(monkeypatch, root: Path) -> None:
    """Make torchvision's CIFAR-10 and SVHN MD5 checks accept the files written under ``root``
    (the classes compare against the published sums; tests write their own small files)."""
    from torchvision import datasets as tv

    folder = root / tv.CIFAR10.base_folder
    if folder.is_dir():
        monkeypatch.setattr(
            tv.CIFAR10, "train_list", [[n, _md5(folder / n)] for n, _ in tv.CIFAR10.train_list]
        )
        monkeypatch.setattr(
            tv.CIFAR10, "test_list", [[n, _md5(folder / n)] for n, _ in tv.CIFAR10.test_list]
        )
        meta = {**tv.CIFAR10.meta, "md5": _md5(folder / tv.CIFAR10.meta["filename"])}
        monkeypatch.setattr(tv.CIFAR10, "meta", meta)
    split_list = {
        k: [url, name, _md5(root / name) if (root / name).is_file() else md5]
        for k, (url, name, md5) in tv.SVHN.split_list.items()
    }
    monkeypatch.setattr(tv.SVHN, "split_list", split_list)
