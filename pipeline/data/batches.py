"""Whole-batch iteration over tensors that already live on the training device.

Our datasets fit in device memory, so instead of a ``DataLoader`` collating single samples (which
left the GPU idle ~35% of the time in DESIGN.md's measurements) each batch is one indexing
operation on resident tensors. Shuffling uses its own generator seeded by (seed, epoch), so the
batch order is identical whatever else consumed random numbers (e.g. cached vs uncached runs).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class TensorBatches:
    """Iterable of ``(x[idx], y[idx])`` batches, reshuffled every pass when ``shuffle``.

    Args:
        x: Inputs, first dimension indexes examples.
        y: Labels (N,).
        batch_size: Rows per batch (the last batch may be smaller).
        shuffle: Draw a new permutation each pass.
        seed: Base seed of the permutations.
        shift: When > 0, roll every training image by up to ``shift`` pixels in x and y (a random
            augmentation; disables frozen-prefix caching).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        shift: int = 0,
    ) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.seed, self.shift = shuffle, seed, shift
        self.epoch = 0

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        n = len(self.y)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        order = order.to(self.x.device)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.x[idx]
            if self.shift:
                dx, dy = torch.randint(-self.shift, self.shift + 1, (2,), generator=g).tolist()
                x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
            yield x, self.y[idx]
