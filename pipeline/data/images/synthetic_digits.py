"""Synthetic digit images rendered from the fonts that ship with matplotlib (no download).

Each image is a digit glyph from a random font and stroke width, put through a random affine
transform (rotation, scale, shear, translation), downsampled to the target resolution, blurred and
corrupted with Gaussian noise. The generator is a pure function of its arguments and the seed.
This is the classic synthetic-to-real digits source (cf. SynNumbers/SynDigits in Ganin & Lempitsky,
"Unsupervised Domain Adaptation by Backpropagation", ICML 2015), built from local fonts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from pipeline.data.domain import Domain, Split
from pipeline.errors import ConfigError

DIGITS = tuple(str(d) for d in range(10))
_RENDER = 32  # glyph canvas in pixels before the affine transform and downsampling


def font_dir() -> Path:
    """Folder of the TrueType fonts bundled with matplotlib."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def resolve_fonts(fonts: Sequence[str]) -> list[Path]:
    """Map font file names (looked up in matplotlib's font folder) or paths to existing files."""
    if not fonts:
        raise ConfigError("data.source.fonts", list(fonts), "a non-empty list of font files")
    paths = []
    for name in fonts:
        path = Path(name) if Path(name).is_absolute() else font_dir() / name
        if not path.is_file():
            available = sorted(p.name for p in font_dir().glob("*.ttf"))
            raise ConfigError("data.source.fonts", name, available)
        paths.append(path)
    return paths


def _glyph(font: ImageFont.FreeTypeFont, text: str, stroke: int) -> np.ndarray:
    """Render ``text`` white-on-black, cropped to its ink and centred in a square canvas."""
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    img = Image.new("L", (right - left + 2, bottom - top + 2))
    ImageDraw.Draw(img).text(
        (1 - left, 1 - top), text, font=font, fill=255, stroke_width=stroke, stroke_fill=255
    )
    w, h = img.size
    scale = 0.8 * _RENDER / max(w, h)
    img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    canvas = Image.new("L", (_RENDER, _RENDER))
    canvas.paste(img, ((_RENDER - img.width) // 2, (_RENDER - img.height) // 2))
    return np.asarray(canvas, dtype=np.float32) / 255.0


def render_templates(fonts: Sequence[Path], stroke_widths: Sequence[int]) -> np.ndarray:
    """Glyph templates, shape (len(fonts) * len(stroke_widths), 10, 32, 32), values in [0, 1]."""
    out = []
    for path in fonts:
        font = ImageFont.truetype(str(path), size=48)
        for stroke in stroke_widths:
            out.append([_glyph(font, d, stroke) for d in DIGITS])
    return np.asarray(out, dtype=np.float32)


def _affine(
    n: int,
    g: torch.Generator,
    max_rotation: float,
    scale: Sequence[float],
    max_shear: float,
    max_translate: float,
) -> torch.Tensor:
    """Random 2x3 affine matrices for ``F.affine_grid`` (output -> input coordinates)."""

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    rot = uniform(-max_rotation, max_rotation) * math.pi / 180
    shear = uniform(-max_shear, max_shear) * math.pi / 180
    s = uniform(*scale)
    tx, ty = uniform(-max_translate, max_translate), uniform(-max_translate, max_translate)
    cos, sin, tan = torch.cos(rot), torch.sin(rot), torch.tan(shear)
    # inverse map: sample the template at (R S)^-1 (p - t); scale >1 makes the digit bigger
    a = torch.stack([cos, sin + cos * tan, -sin, cos - sin * tan], dim=1).view(n, 2, 2)
    a = a / s.view(n, 1, 1)
    t = torch.stack([tx, ty], dim=1).unsqueeze(2)
    return torch.cat([a, -a @ t], dim=2)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur with a per-image sigma (0 leaves the image unchanged)."""
    radius = 2
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(offsets**2) / (2 * sigma.clamp_min(1e-3).view(-1, 1) ** 2))
    k = k / k.sum(dim=1, keepdim=True)  # (N, 2r+1); sigma ~0 gives a delta
    n = x.shape[0]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    rows = x.unfold(3, 2 * radius + 1, 1)  # (N, 1, H+2r, W, 2r+1)
    x = (rows * k.view(n, 1, 1, 1, -1)).sum(-1)
    cols = x.unfold(2, 2 * radius + 1, 1)  # (N, 1, H, W, 2r+1)
    return (cols * k.view(n, 1, 1, 1, -1)).sum(-1)


def render_digits(
    n: int,
    *,
    image_size: int,
    fonts: Sequence[str],
    seed: int,
    stroke_widths: Sequence[int] = (0, 1, 2),
    max_rotation: float = 15.0,
    scale: Sequence[float] = (0.8, 1.1),
    max_shear: float = 15.0,
    max_translate: float = 0.1,
    blur_sigma: Sequence[float] = (0.0, 1.0),
    noise_std: float = 0.05,
    native_size: int | None = None,
) -> Split:
    """Render ``n`` class-balanced digit images.

    Args:
        n: Number of images.
        image_size: Output height and width in pixels.
        fonts: Font file names in matplotlib's font folder, or absolute paths.
        seed: Random seed; the same arguments give byte-identical arrays.
        stroke_widths: Extra stroke widths (in 48 px font units) drawn around glyphs.
        max_rotation: Maximum rotation in degrees, either way.
        scale: Range of the zoom factor.
        max_shear: Maximum shear angle in degrees, either way.
        max_translate: Maximum shift as a fraction of half the image size.
        blur_sigma: Range of the Gaussian blur sigma, in output pixels.
        noise_std: Standard deviation of additive Gaussian noise.
        native_size: When set, images are made at this resolution (like a low-resolution scanner)
            and then resized to ``image_size`` with the same bilinear resize the target loaders
            use; blur and noise apply at the native resolution.

    Returns:
        Images (n, 1, image_size, image_size) in [0, 1] and labels (n,).
    """
    if n < 10:
        raise ConfigError("data.source.n_train/n_val", n, "at least 10 images (one per class)")
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise ConfigError("data.source.noise_std", noise_std, "a finite number >= 0")
    templates = torch.from_numpy(render_templates(resolve_fonts(fonts), stroke_widths))
    g = torch.Generator().manual_seed(seed)
    y = torch.randperm(n, generator=g) % 10
    style = torch.randint(len(templates), (n,), generator=g)
    glyphs = templates[style, y].unsqueeze(1)  # (n, 1, 32, 32)
    theta = _affine(n, g, max_rotation, scale, max_shear, max_translate)
    grid = F.affine_grid(theta, [n, 1, _RENDER, _RENDER], align_corners=False)
    x = F.grid_sample(glyphs, grid, align_corners=False, padding_mode="zeros")
    size = native_size or image_size
    x = F.interpolate(x, size=(size, size), mode="area")
    lo, hi = blur_sigma
    x = _blur(x, lo + (hi - lo) * torch.rand(n, generator=g))
    x = (x + noise_std * torch.randn(x.shape, generator=g)).clamp(0, 1)
    if size != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True)
    return Split(x.clamp(0, 1).numpy(), y.numpy().astype(np.int64))


def make_synthetic_digits(
    *,
    image_size: int,
    seed: int,
    n_train: int,
    n_val: int,
    fonts: Sequence[str],
    shuffle_labels: bool = False,
    **render: object,
) -> Domain:
    """Synthetic digits source domain with train and val splits.

    Args:
        image_size: Output resolution.
        seed: Random seed (train uses ``seed``, val ``seed + 1``).
        n_train: Training images.
        n_val: Validation images.
        fonts: Font files, see :func:`render_digits`.
        shuffle_labels: Replace every label by a random one. The images then carry no
            information about the labels, so a model pretrained on them is a deliberately bad
            source (the "random labels" control of Zhang et al., ICLR 2017).
        **render: Further arguments of :func:`render_digits`.
    """
    splits = {
        "train": render_digits(n_train, image_size=image_size, fonts=fonts, seed=seed, **render),
        "val": render_digits(n_val, image_size=image_size, fonts=fonts, seed=seed + 1, **render),
    }
    if shuffle_labels:
        rng = np.random.default_rng(seed + 2)
        splits = {k: Split(s.x, rng.permutation(s.y)) for k, s in splits.items()}
    recipe = {
        "generator": "pipeline.data.images.synthetic_digits.render_digits",
        "seed": seed,
        "fonts": list(fonts),
        "shuffle_labels": shuffle_labels,
        **{k: list(v) if isinstance(v, Sequence) else v for k, v in render.items()},
    }
    name = "synthetic_digits_shuffled" if shuffle_labels else "synthetic_digits"
    return Domain(name, DIGITS, splits, recipe)
