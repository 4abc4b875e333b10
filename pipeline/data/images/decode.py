"""Decode image datasets once: PIL images -> uint8 arrays at one size and channel count, cached.

Any dataset whose items are ``(PIL image, class index)`` (torchvision's ``ImageFolder`` and its
own dataset classes: MNIST, USPS, SVHN, CIFAR-10, ...) is decoded by a ``DataLoader`` with
worker processes into one uint8 array (N, C, S, S). The result is stored in a cache folder keyed
by what it was decoded from (the files' names, sizes and modification times, as DVC's own state
database does, plus the channel count and size), so a second prepare of the same files reads one
safetensors file instead of decoding again. The cache folder is a DVC output of the prepare
stage, so ``dvc push``/``dvc pull`` carry it like any other data.

Every image is converted the same way here and in serving (:func:`to_array`): 8-bit modes (1, L,
P, LA, RGB, RGBA, ...) become grayscale or RGB (alpha dropped), then a bilinear, antialiased
resize to S x S. Modes whose values do not fit in 8 bits (16-bit, 32-bit int or float, CMYK...)
are refused with the file named rather than clipped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.errors import DataError

# PIL modes whose values are 8-bit and that convert to L/RGB without losing range
EIGHT_BIT = ("1", "L", "P", "LA", "PA", "La", "RGB", "RGBA", "RGBa", "RGBX")
_MODE = {1: "L", 3: "RGB"}
CACHE_VERSION = 1
# bytes held per decoded pixel value while preparing: the uint8 array, its float32 copy and the
# normalised float32 copy
BYTES_PER_VALUE = 1 + 4 + 4


def to_array(image: Image.Image, channels: int, size: int) -> np.ndarray:
    """One image as uint8 (channels, size, size): converted to L or RGB, resized bilinear.

    Raises:
        ValueError: The image's mode is not 8-bit (its values would be clipped) or ``channels``
            is not 1 or 3.
    """
    if channels not in _MODE:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if image.mode not in EIGHT_BIT:
        raise ValueError(
            f"image mode {image.mode} is not 8-bit grayscale/RGB(A)/palette; converting it would "
            "clip or reinterpret its values: convert such files to 8-bit first"
        )
    image = image.convert(_MODE[channels])
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR, reducing_gap=None)
    a = np.asarray(image, dtype=np.uint8)
    return a[None] if channels == 1 else np.ascontiguousarray(a.transpose(2, 0, 1))


@dataclass(frozen=True)
class Decoded:
    """A decoded dataset: uint8 images (N, C, S, S), int64 labels, class names, source files."""

    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    files: tuple[str, ...] = ()


class _Items:
    """``dataset[i]`` as ``(array, label, None)`` or ``(None, -1, problem)``: workers hand errors
    back as values (a DataLoader re-raises worker exceptions without their arguments)."""

    def __init__(self, dataset: object, channels: int, size: int) -> None:
        self.dataset, self.channels, self.size = dataset, channels, size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, int, str | None]:
        try:
            image, label = self.dataset[i]
            image.load()
            return to_array(image, self.channels, self.size), int(label), None
        # PIL: truncated or unidentified files, unusable modes, decompression bombs
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            return None, -1, str(err) or type(err).__name__


def _collate(items: list) -> list:
    return items


def decode(
    dataset: object,
    *,
    channels: int,
    size: int,
    name_of: Callable[[int], str],
    workers: int = 0,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode every item of ``dataset`` (``(PIL image, label)`` items) in order.

    Args:
        dataset: Indexable dataset of (PIL image, class index).
        channels: 1 (grayscale) or 3 (RGB).
        size: Output height and width.
        name_of: Item index -> what to name in an error (its file).
        workers: ``DataLoader`` worker processes (0 decodes in this process).
        batch_size: Items per worker task.

    Returns:
        uint8 images (N, channels, size, size) and int64 labels (N,).

    Raises:
        DataError: An item cannot be read or converted; names its file and the reason.
    """
    from torch.utils.data import DataLoader

    n = len(dataset)
    x = np.empty((n, channels, size, size), np.uint8)
    y = np.empty(n, np.int64)
    loader = DataLoader(
        _Items(dataset, channels, size),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        persistent_workers=False,
    )
    i = 0
    for batch in loader:
        for array, label, problem in batch:
            if problem is not None:
                raise DataError(name_of(i), f"unreadable, truncated or unusable image: {problem}")
            x[i], y[i] = array, label
            i += 1
    return x, y


def check_memory(n: int, shape: Sequence[int], where: object, key: str) -> None:
    """Refuse, before decoding, a dataset whose arrays would not fit in the available memory.

    Raises:
        DataError: ``n`` images of ``shape`` need more than 80% of the memory available now.
    """
    import psutil

    need = n * int(np.prod(shape)) * BYTES_PER_VALUE
    available = psutil.virtual_memory().available
    if need > 0.8 * available:
        raise DataError(
            where,
            f"{n} images at {'x'.join(map(str, shape))} need ~{_size(need)} in memory to "
            f"prepare, {_size(available)} are available; streaming from disk is not "
            f"supported yet: lower data.image_size or use fewer images ({key}.max_images)",
        )


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def file_stats(root: Path, files: Sequence[str]) -> str:
    """Digest of the names, sizes and modification times of ``files`` (relative to ``root``)."""
    h = hashlib.sha256()
    for rel in files:
        st = (root / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _digest(x: np.ndarray, y: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (x, y):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class DecodeCache:
    """Folder of decoded datasets, one sub-folder per key (a digest of what was decoded).

    Args:
        folder: The cache folder; None caches nothing.
    """

    ARRAYS, INDEX = "arrays.safetensors", "index.json"

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = None if folder is None else Path(folder)

    @staticmethod
    def key(recipe: dict) -> str:
        """The cache key of a decode recipe (JSON-able: reader, root, file digest, size, ...)."""
        text = json.dumps({"version": CACHE_VERSION, **recipe}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def get(
        self,
        recipe: dict,
        make: Callable[[], Decoded],
        check: Callable[[int], None] | None = None,
    ) -> tuple[Decoded, bool]:
        """The cached entry for ``recipe``, or ``make()`` stored under it; and whether it was a
        hit. ``check(n)`` vets the entry's image count before it is loaded; an entry that fails
        its digest is decoded again. A hit marks the entry as used now (see :meth:`prune`)."""
        if self.folder is None:
            return make(), False
        from safetensors.numpy import load_file

        entry = self.folder / self.key(recipe)
        try:
            index = json.loads((entry / self.INDEX).read_text())
            if check is not None:
                check(index["count"])
            arrays = load_file(str(entry / self.ARRAYS))
            if _digest(arrays["x"], arrays["y"]) == index["sha256"]:
                os.utime(entry / self.INDEX)
                decoded = Decoded(
                    arrays["x"], arrays["y"], tuple(index["classes"]), tuple(index["files"])
                )
                return decoded, True
        except (OSError, ValueError, KeyError):
            pass
        decoded = make()
        self._put(entry, recipe, decoded)
        return decoded, False

    def prune(self, before: float) -> list[str]:
        """Remove the entries not used since ``before`` (a ``time.time()``); return their keys.

        Prepare calls this after reading both domains, so the folder (a DVC output) holds what
        the current data needs, not every dataset ever decoded; DVC's cache keeps older ones.
        """
        if self.folder is None or not self.folder.is_dir():
            return []
        gone = []
        for entry in sorted(self.folder.iterdir()):
            index = entry / self.INDEX
            if entry.is_dir() and (not index.is_file() or index.stat().st_mtime < before):
                shutil.rmtree(entry, ignore_errors=True)
                gone.append(entry.name)
        return gone

    def _put(self, entry: Path, recipe: dict, decoded: Decoded) -> None:
        from safetensors.numpy import save_file

        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
        try:
            save_file({"x": decoded.x, "y": decoded.y}, str(tmp / self.ARRAYS))
            index = {
                "recipe": recipe,
                "classes": list(decoded.classes),
                "files": list(decoded.files),
                "count": len(decoded.y),
                "sha256": _digest(decoded.x, decoded.y),
            }
            (tmp / self.INDEX).write_text(json.dumps(index) + "\n")
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
