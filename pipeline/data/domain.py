"""In-memory datasets: labelled splits of one domain, their digests and data cards."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Images and integer labels of one split.

    Attributes:
        x: Images, float32, shape (N, C, H, W).
        y: Class indices, int64, shape (N,).
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray) -> Split:
        """Rows ``index`` of this split, in that order."""
        return Split(self.x[index], self.y[index])

    def class_counts(self, num_classes: int) -> list[int]:
        """Number of examples of each class 0..num_classes-1."""
        return np.bincount(self.y, minlength=num_classes).tolist()

    def sha256(self) -> str:
        """Digest of the exact arrays (shape, dtype and bytes of x and y)."""
        h = hashlib.sha256()
        for a in (self.x, self.y):
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
    """

    name: str
    classes: tuple[str, ...]
    splits: dict[str, Split]
    recipe: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def card(self) -> dict:
        """Data card: class counts, split sizes and sha256 digests per split, and the recipe."""
        splits = {
            name: {
                "size": len(split),
                "class_counts": split.class_counts(self.num_classes),
                "sha256": split.sha256(),
                "shape": list(split.x.shape[1:]),
            }
            for name, split in self.splits.items()
        }
        whole = hashlib.sha256("".join(s["sha256"] for s in splits.values()).encode())
        return {
            "name": self.name,
            "classes": list(self.classes),
            "sha256": whole.hexdigest(),
            "splits": splits,
            "recipe": self.recipe,
        }


def standardize(domain: Domain, mean: float, std: float) -> Domain:
    """The same domain with every image mapped to ``(x - mean) / std``."""
    splits = {
        k: Split(((s.x - mean) / std).astype(np.float32), s.y) for k, s in domain.splits.items()
    }
    recipe = {**domain.recipe, "standardize": {"mean": mean, "std": std}}
    return Domain(domain.name, domain.classes, splits, recipe)
