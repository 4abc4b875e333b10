"""Freeze the first k layer groups.

"Freeze k" (Yosinski et al., "How transferable are features in deep neural networks?", NeurIPS
2014): groups 0..k-1 get ``requires_grad=False`` and their BatchNorm layers stay in eval mode, so
their running statistics keep the source values. k=0 is full fine-tuning, k=G a linear probe.
The same group map drives per-group learning rates (:meth:`GroupedNet.param_groups`).
"""

from __future__ import annotations

from pipeline.errors import ConfigError
from pipeline.models.grouped import GroupedNet


def resolve_depth(value: int | str, num_groups: int, key: str) -> int:
    """Turn a depth setting (an int in [0, G] or ``"all"``) into an int, or raise naming ``key``."""
    if value == "all":
        return num_groups
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= num_groups:
        raise ConfigError(
            key,
            value,
            f"an integer in [0, {num_groups}] or 'all' "
            f"(the backbone has {num_groups} layer groups)",
        )
    return value


def freeze(model: GroupedNet, k: int) -> None:
    """Stop gradients into the first ``k`` groups and put them in eval mode; unfreeze the rest."""
    for i, group in enumerate(model.groups):
        group.requires_grad_(i >= k)
    keep_frozen_eval(model, k)


def keep_frozen_eval(model: GroupedNet, k: int) -> None:
    """Put the first ``k`` groups in eval mode (BatchNorm uses, and keeps, its running stats)."""
    for group in model.groups[:k]:
        group.eval()
