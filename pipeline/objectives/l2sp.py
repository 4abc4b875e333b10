"""L2-SP: fine-tuning with an L2 penalty towards the starting point.

Li, Grandvalet & Davoine, "Explicit Inductive Bias for Transfer Learning with Convolutional
Networks", ICML 2018. With w the shared (backbone) weights, w0 their source values and v the new
head weights, the penalty added to the loss is

    Omega(w) = alpha/2 * ||w - w0||^2 + beta/2 * ||v||^2
"""

from __future__ import annotations

import torch

from pipeline.models.grouped import GroupedNet
from pipeline.objectives.base import Objective, StepOutputs


class L2SP(Objective):
    """Penalty towards a snapshot of the backbone weights taken by :meth:`setup`.

    Only trainable (unfrozen) backbone weights are pulled. Reads no batch.

    Args:
        alpha: Strength of the pull towards the starting backbone weights.
        beta: Plain L2 strength on the new head.
        weight: Multiplies the term in the total loss.
    """

    def __init__(self, alpha: float, beta: float = 0.0, weight: float = 1.0) -> None:
        super().__init__(weight)
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {alpha} and {beta}")
        self.alpha, self.beta = alpha, beta
        self.names: list[str] = []

    def setup(self, model: GroupedNet) -> None:
        self.names = [n for n, _ in model.named_parameters() if n.startswith("groups.")]
        params = dict(model.named_parameters())
        for i, n in enumerate(self.names):
            self.register_buffer(f"w0_{i}", params[n].detach().clone())

    def forward(self, step: StepOutputs) -> torch.Tensor:
        model = step.model
        params = dict(model.named_parameters())
        dev = next(iter(params.values())).device
        shared = torch.zeros((), device=dev)
        for i, n in enumerate(self.names):
            if params[n].requires_grad:
                shared = shared + (params[n] - getattr(self, f"w0_{i}")).pow(2).sum()
        head = sum(p.pow(2).sum() for p in model.head.parameters())
        return 0.5 * self.alpha * shared + 0.5 * self.beta * head
