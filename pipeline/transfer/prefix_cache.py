"""Frozen-prefix caching: compute the frozen groups' output once and train only the rest.

When groups 0..k-1 are frozen (no gradient, BatchNorm in eval mode) and inputs are not randomly
augmented, their output is a fixed function of the input. Feeding the cached activations to
groups k.. gives the same forward and backward pass as running the whole network, at the cost of
the unfrozen part only. With every group frozen (a linear probe) and a fixed-function pool, the
cache holds the pooled features (``k = num_groups + 1``), so each step runs the head alone.
Activations are memoised per (source weights, k, split), so an Optuna study or a freeze-depth
sweep computes each prefix once.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from pipeline.models.grouped import GroupedNet
from pipeline.models.predict import inference_batch
from pipeline.transfer.widen import PER_CHANNEL


def pool_is_fixed(model: GroupedNet) -> bool:
    """Whether ``model.pool`` applied to the last group's output is a fixed per-sample function,
    which a linear probe may compute once: built only from parameter-free per-channel layers
    (average or max pooling, activations), ``Flatten`` and ``Sequential``, or a module that
    says so (``fixed_function = True``, as timm backbones' pool does). Anything else (weights,
    dropout, batch statistics) runs at every step."""
    allowed = (*PER_CHANNEL, nn.Flatten, nn.Sequential)
    return all(
        getattr(m, "fixed_function", False) or isinstance(m, allowed) for m in model.pool.modules()
    )


@torch.inference_mode()
def prefix_activations(
    model: GroupedNet, x: torch.Tensor, k: int, batch_size: int | None = None
) -> torch.Tensor:
    """Output of groups 0..k-1 (in eval mode) on ``x``, in batches of ``batch_size`` (default
    :func:`~pipeline.models.predict.inference_batch`); ``x`` itself when k == 0, and the pooled
    features (what the head sees) when k == ``model.num_groups + 1``."""
    if k == 0:
        return x
    if k > model.num_groups + 1:
        raise ValueError(f"k={k}: the model has {model.num_groups} groups and a pool")
    if k > model.num_groups and not pool_is_fixed(model):
        raise ValueError("the pool is not a fixed function (see pool_is_fixed): cannot cache it")
    batch_size = batch_size or inference_batch(x.device)
    frozen = [*model.groups[:k], model.pool] if k > model.num_groups else model.groups[:k]
    was_training = [g.training for g in frozen]
    for g in frozen:
        g.eval()

    def prefix(xb: torch.Tensor) -> torch.Tensor:
        if k > model.num_groups:
            return model.forward_features(xb)
        return model.forward_groups(xb, 0, k)

    out = torch.cat([prefix(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    for g, mode in zip(frozen, was_training, strict=True):
        g.train(mode)
    return out.clone()  # a normal tensor: inference tensors cannot be saved for backward


class PrefixCache:
    """Memo of prefix activations keyed by (weights id, k, split name), least recently used out.

    Args:
        max_items: Entries kept.
    """

    def __init__(self, max_items: int = 32) -> None:
        self.max_items = max_items
        self._store: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.hits = self.misses = 0

    def get(
        self, model: GroupedNet, x: torch.Tensor, k: int, key: tuple[str, str] | None
    ) -> torch.Tensor:
        """Activations of the first ``k`` groups on ``x``.

        Args:
            model: Network whose first k groups hold the weights identified by ``key[0]``.
            x: Inputs.
            k: Number of frozen groups.
            key: (weights id, split name); None disables memoisation.
        """
        if key is None or k == 0:
            return prefix_activations(model, x, k)
        full = (*key, k)
        if full in self._store:
            self.hits += 1
            self._store.move_to_end(full)
            return self._store[full]
        self.misses += 1
        out = self._store[full] = prefix_activations(model, x, k)
        if len(self._store) > self.max_items:
            self._store.popitem(last=False)
        return out
