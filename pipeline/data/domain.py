"""In-memory datasets of any modality: splits of one domain, their digests and data cards.

Nothing here assumes images: a split holds any array of inputs whose first dimension indexes
examples (images (N, C, H, W), token ids (N, L), feature vectors (N, D)), and labels or none.
Image-only steps (resizing, per-channel normalisation, shift augmentation) live in
:mod:`pipeline.data.images`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Inputs and (optionally) integer labels of one split.

    Attributes:
        x: Inputs, first dimension indexes examples; any further shape and numeric dtype.
        y: Class indices, int64, shape (N,), or None for an unlabelled split.
    """

    x: np.ndarray
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.y is not None and len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def labelled(self) -> bool:
        return self.y is not None

    def subset(self, index: np.ndarray) -> Split:
        """Rows ``index`` of this split, in that order."""
        return Split(self.x[index], None if self.y is None else self.y[index])

    def unlabelled(self) -> Split:
        """The same inputs without their labels."""
        return Split(self.x)

    def class_counts(self, num_classes: int) -> list[int]:
        """Number of examples of each class 0..num_classes-1 (an unlabelled split has none)."""
        if self.y is None:
            return []
        return np.bincount(self.y, minlength=num_classes).tolist()

    def sha256(self) -> str:
        """Digest of the exact arrays (shape, dtype and bytes of x, and of y when labelled)."""
        h = hashlib.sha256()
        for a in (self.x, self.y):
            if a is None:
                continue
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class Domain:
    """A dataset of one domain: named classes, its splits and how it was made.

    Attributes:
        name: Dataset name, e.g. ``synthetic_digits``.
        classes: Class names, index = label.
        splits: Split name (train/val/test) -> Split.
        recipe: How the data was made (generator settings, source files), for the data card.
        modality: What the inputs are (``image``, ``tokens``, ``features``); steps that only make
            sense for one modality check it.
    """

    name: str
    classes: tuple[str, ...]
    splits: dict[str, Split]
    recipe: dict = field(default_factory=dict)
    modality: str = "image"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example's inputs (e.g. (C, H, W))."""
        return tuple(next(iter(self.splits.values())).x.shape[1:])

    def without_labels(self, *splits: str) -> Domain:
        """The same domain with the labels of ``splits`` removed (what a transductive run may
        see of its target: the inputs, never the labels)."""
        kept = {n: s.unlabelled() if n in splits else s for n, s in self.splits.items()}
        return Domain(self.name, self.classes, kept, self.recipe, self.modality)

    def card(self) -> dict:
        """Data card: class counts, split sizes and sha256 digests per split, and the recipe."""
        splits = {
            name: {
                "size": len(split),
                "labelled": split.labelled,
                "class_counts": split.class_counts(self.num_classes),
                "sha256": split.sha256(),
                "shape": list(split.x.shape[1:]),
                "dtype": split.x.dtype.str,
            }
            for name, split in self.splits.items()
        }
        whole = hashlib.sha256("".join(s["sha256"] for s in splits.values()).encode())
        return {
            "name": self.name,
            "modality": self.modality,
            "classes": list(self.classes),
            "sha256": whole.hexdigest(),
            "splits": splits,
            "recipe": self.recipe,
        }
