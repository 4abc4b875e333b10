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

    def param_groups(
        self,
        frozen: int,
        *,
        head_lr: float,
        backbone_lr: float,
        lr_decay: float = 1.0,
        weight_decay: float = 0.0,
    ) -> list[dict]:
        """Optimiser parameter groups: one per trainable layer group, then the head.

        Layer-wise learning-rate decay (Howard & Ruder, "Universal Language Model Fine-tuning",
        ACL 2018): group i trains at ``backbone_lr * lr_decay**(G-1-i)``, the head at ``head_lr``;
        the first ``frozen`` groups get no group at all.

        Returns:
            Dicts with ``params``, ``lr``, ``weight_decay`` and a ``name`` for logging.
        """
        last = self.num_groups - 1
        groups = [
            {
                "name": f"group{i}",
                "params": list(g.parameters()),
                "lr": backbone_lr * lr_decay ** (last - i),
                "weight_decay": weight_decay,
            }
            for i, g in enumerate(self.groups)
            if i >= frozen
        ]
        groups.append(
            {
                "name": "head",
                "params": list(self.head.parameters()),
                "lr": head_lr,
                "weight_decay": weight_decay,
            }
        )
        return groups
