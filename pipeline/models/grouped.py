"""The backbone contract every model follows: ordered layer groups, a pool and a linear head.

Freezing and per-group learning rates are expressed as "the first k groups", never as module
names (the ``group_matcher(coarse=True)`` idea of timm), so every strategy works for every backbone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class GroupedNet(nn.Module):
    """A classifier ``head(pool(g_{G-1}(...g_0(x))))`` with G ordered layer groups.

    Args:
        groups: Layer groups in forward order (stem first).
        feature_dim: Width of the pooled features the head sees.
        num_classes: Outputs of the head.
        pool: Module mapping the last group's output to (N, feature_dim); global average pooling
            by default.
    """

    def __init__(
        self,
        groups: Sequence[nn.Module],
        feature_dim: int,
        num_classes: int,
        pool: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.groups = nn.ModuleList(groups)
        self.pool = (
            pool if pool is not None else nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        )
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward_groups(
        self, x: torch.Tensor, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """Run groups ``start..stop-1`` on ``x`` (the output of group ``start-1``)."""
        for group in self.groups[start:stop]:
            x = group(x)
        return x

    def forward_features(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Pooled features (N, feature_dim); for ``start`` > 0, ``x`` is group ``start-1``'s output.

        ``start == num_groups + 1`` means ``x`` already is the pooled feature vector.
        """
        if start > self.num_groups:
            return x
        return self.pool(self.forward_groups(x, start))

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        return self.head(self.forward_features(x, start))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` classes."""
        self.head = nn.Linear(self.feature_dim, num_classes).to(self.head.weight.device)

    def group_parameters(self) -> list[list[nn.Parameter]]:
        """Parameters of each group, in group order (the head is not included)."""
        return [list(g.parameters()) for g in self.groups]
