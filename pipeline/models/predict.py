"""Batched inference."""

from __future__ import annotations

import torch

from pipeline.models.grouped import GroupedNet


@torch.inference_mode()
def predict_logits(
    model: GroupedNet, x: torch.Tensor, batch_size: int = 1024, features: bool = False
) -> torch.Tensor:
    """Logits (or pooled features when ``features``) of ``model`` in eval mode, on x's device."""
    was = model.training
    model.eval()
    fn = model.forward_features if features else model
    out = torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was)
    return out
