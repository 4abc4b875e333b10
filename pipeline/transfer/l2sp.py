"""L2-SP: fine-tuning with an L2 penalty towards the starting point.

Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with Convolutional
Networks", ICML 2018. With w the shared (backbone) weights, w0 their source values and v the new
head weights, the penalty added to the loss is

    Omega(w) = alpha/2 * ||w - w0||^2 + beta/2 * ||v||^2
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.grouped import GroupedNet


class L2SP(nn.Module):
    """Penalty towards a snapshot of the backbone weights taken at construction.

    Args:
        model: The network at its starting point (source weights loaded).
        alpha: Strength of the pull towards the source backbone weights.
        beta: Plain L2 strength on the new head.
    """

    def __init__(self, model: GroupedNet, alpha: float, beta: float = 0.0) -> None:
        super().__init__()
        self.alpha, self.beta = alpha, beta
        names = [n for n, p in model.named_parameters() if n.startswith("groups.")]
        self.names = names
        params = dict(model.named_parameters())
        for i, n in enumerate(names):
            self.register_buffer(f"w0_{i}", params[n].detach().clone())

    def forward(self, model: GroupedNet) -> torch.Tensor:
        params = dict(model.named_parameters())
        dev = next(iter(params.values())).device
        shared = torch.zeros((), device=dev)
        for i, n in enumerate(self.names):
            if params[n].requires_grad:
                shared = shared + (params[n] - getattr(self, f"w0_{i}")).pow(2).sum()
        head = sum(p.pow(2).sum() for p in model.head.parameters())
        return 0.5 * self.alpha * shared + 0.5 * self.beta * head
