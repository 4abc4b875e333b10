"""Benchmark: decoding an ImageFolder of PNGs in prepare against a plain torchvision loop.
Not collected by pytest:

    python tests/benchmarks/bench_decode.py [--images 10000] [--workers 2]

Writes N 32x32 RGB PNGs (10 classes) to a temporary folder, then times, interleaved and best of
three in one process:

- plain: ``ImageFolder(root, transform=ToTensor())`` iterated by a ``DataLoader`` (batch 256,
  the same worker processes), every batch touched;
- prepare, cold: Graftlab's :func:`pipeline.data.images.folder.read_folder` decoding every file
  into uint8 arrays and writing the decode cache (an empty cache each time);
- prepare, warm: the same call again, which finds the cache and decodes nothing.

Prints the speed ratio plain / prepare (>= 0.8 is the goal) and warm / cold. Timings on a shared
machine are rough: run it a few times and read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.images.decode import DecodeCache
from pipeline.data.images.folder import read_folder


def write_pngs(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(folder / f"{i:05d}.png")


def plain(root: Path, workers: int) -> float:
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import ToTensor

    t0 = time.perf_counter()
    loader = DataLoader(
        ImageFolder(str(root), transform=ToTensor()), batch_size=256, num_workers=workers
    )
    total = 0.0
    for x, _ in loader:
        total += float(x[:, 0, 0, 0].sum())  # touch every batch
    return time.perf_counter() - t0


def prepare(root: Path, cache: Path, workers: int) -> float:
    t0 = time.perf_counter()
    read_folder(
        root,
        channels=3,
        image_size=32,
        key="data.target",
        cache=DecodeCache(cache),
        workers=workers,
    )
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
        root, cache = Path(tmp) / "images", Path(tmp) / "cache"
        write_pngs(root, args.images)
        times: dict[str, list[float]] = {"plain": [], "cold": [], "warm": []}
        for _ in range(args.repeats):
            times["plain"].append(plain(root, args.workers))
            shutil.rmtree(cache, ignore_errors=True)
            times["cold"].append(prepare(root, cache, args.workers))
            times["warm"].append(prepare(root, cache, args.workers))
        best = {k: min(v) for k, v in times.items()}
    print(
        f"{args.images} PNGs 32x32 RGB, {args.workers} workers, best of {args.repeats} "
        "(rough: shared machine)"
    )
    for name, seconds in best.items():
        print(f"  {name:5s} {seconds:7.2f} s  {args.images / seconds:9.0f} images/s")
    print(
        f"speed ratio prepare (cold, decodes and writes the cache) / plain loop: "
        f"{best['plain'] / best['cold']:.2f}  (goal >= 0.8)"
    )
    print(
        f"second prepare (cache hit, no decoding) takes {best['warm'] / best['cold']:.2f} "
        "of the first"
    )


if __name__ == "__main__":
    main()
