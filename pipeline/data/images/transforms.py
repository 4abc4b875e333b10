"""Image-only preprocessing and augmentation: resize, per-channel normalisation, random shift."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.data.domain import Domain, Split


def resize(x: np.ndarray, image_size: int) -> np.ndarray:
    """Resize images (N, C, H, W) to (N, C, image_size, image_size), bilinear with antialiasing."""
    if x.shape[-1] == image_size and x.shape[-2] == image_size:
        return x.astype(np.float32)
    t = torch.from_numpy(x.astype(np.float32))
    out = F.interpolate(t, size=(image_size, image_size), mode="bilinear", antialias=True)
    return out.clamp(0, 1).numpy()


# ITU-R 601-2 luma, as PIL's convert("L")
_LUMA = np.asarray([0.299, 0.587, 0.114], np.float32).reshape(1, 3, 1, 1)


def to_channels(domain: Domain, channels: int) -> Domain:
    """The same images with ``channels`` channels: grayscale repeated to RGB, RGB to luma.

    Raises:
        ValueError: Not images, or a conversion other than 1 <-> 3 (or none).
    """
    have = domain.input_shape[0] if len(domain.input_shape) == 3 else None
    if domain.modality != "image" or have is None:
        raise ValueError(f"{domain.name}: channel conversion needs images (N, C, H, W)")
    if have == channels:
        return domain
    if (have, channels) == (1, 3):
        convert = lambda x: np.repeat(x, 3, axis=1)  # noqa: E731
    elif (have, channels) == (3, 1):
        convert = lambda x: (x * _LUMA).sum(axis=1, keepdims=True, dtype=np.float32)  # noqa: E731
    else:
        raise ValueError(f"{domain.name}: cannot convert {have} channels to {channels}")
    splits = {k: Split(convert(v.x).astype(np.float32), v.y) for k, v in domain.splits.items()}
    recipe = {**domain.recipe, "channels": {"from": have, "to": channels}}
    return Domain(domain.name, domain.classes, splits, recipe, domain.modality)


def channel_stats(domain: Domain, split: str = "train") -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of one split's images (N, C, H, W)."""
    x = domain.splits[split].x
    return (
        [float(x[:, c].mean()) for c in range(x.shape[1])],
        [float(x[:, c].std()) for c in range(x.shape[1])],
    )


def normalize(domain: Domain, mean: list[float], std: list[float]) -> Domain:
    """The same domain with channel c of every image mapped to ``(x - mean[c]) / std[c]``.

    Raises:
        ValueError: The domain is not images, or has another channel count than ``mean``.
    """
    channels = domain.input_shape[0] if len(domain.input_shape) == 3 else None
    if domain.modality != "image" or channels != len(mean):
        raise ValueError(
            f"{domain.name}: normalisation needs images with {len(mean)} channels, "
            f"got {domain.modality} inputs of shape {domain.input_shape}"
        )
    # float32 statistics: the arithmetic stays in float32, as it would with scalar statistics
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    splits = {k: Split(((v.x - m) / s).astype(np.float32), v.y) for k, v in domain.splits.items()}
    recipe = {**domain.recipe, "normalize": {"mean": list(mean), "std": list(std)}}
    return Domain(domain.name, domain.classes, splits, recipe, domain.modality)


class RandomShift:
    """Roll a batch of images by up to ``pixels`` in x and y (one random offset per batch).

    Args:
        pixels: Largest shift either way; 0 is no augmentation.
    """

    def __init__(self, pixels: int) -> None:
        if pixels < 0:
            raise ValueError(f"shift must be >= 0, got {pixels}")
        self.pixels = pixels

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        p = self.pixels
        dx, dy = torch.randint(-p, p + 1, (2,), generator=generator).tolist()
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))


def reprepare(
    domain: Domain, channels: int, size: int, mean: list[float], std: list[float]
) -> Domain:
    """The same images as another network expects them: prepare's normalisation undone, resized
    to ``size``, converted to ``channels`` and normalised with ``mean``/``std`` (for candidate
    sources whose pretrained inputs differ from the configured backbone's)."""
    norm = domain.recipe.get("normalize")
    c = domain.input_shape[0]
    m = np.asarray(norm["mean"] if norm else [0.0] * c, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(norm["std"] if norm else [1.0] * c, np.float32).reshape(1, -1, 1, 1)
    splits = {
        k: Split(resize(np.clip(v.x * s + m, 0, 1), size), v.y) for k, v in domain.splits.items()
    }
    recipe = {k: v for k, v in domain.recipe.items() if k != "normalize"}
    raw = Domain(domain.name, domain.classes, splits, recipe, domain.modality)
    return normalize(to_channels(raw, channels), mean, std)
