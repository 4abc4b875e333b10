"""Shared parts of the domain-adversarial objectives (DANN, CDAN): the gradient reversal
schedule and the domain discriminator.

Ganin, Ustinova, Ajakan, Germain, Larochelle, Laviolette, Marchand & Lempitsky,
"Domain-Adversarial Training of Neural Networks", JMLR 2016: the features feed a domain
discriminator through a gradient reversal layer (identity forward, gradient times ``-lambda``
backward), and ``lambda`` grows from 0 to 1 over training,

    lambda_p = 2 / (1 + exp(-gamma p)) - 1,   gamma = 10,  p = training progress in [0, 1],

so that the discriminator's noisy early signal does not disturb the classifier.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def reversal_coefficient(progress: float, gamma: float = 10.0, high: float = 1.0) -> float:
    """Ganin et al.'s schedule ``high * (2 / (1 + exp(-gamma p)) - 1)`` for ``p`` in [0, 1]."""
    p = min(max(float(progress), 0.0), 1.0)
    return high * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


def reverse_gradient(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Identity forward; the gradient is multiplied by ``-coefficient`` on the way back."""
    from skada.deep.modules import GradientReversalLayer

    return GradientReversalLayer.apply(x, coefficient)


class DomainDiscriminator(nn.Module):
    """A two-hidden-layer MLP that outputs one logit per row: source (1) vs target (0).

    The architecture of Ganin et al. (2016) and Long et al. (2018): Linear-BN-ReLU twice, then a
    linear logit. Hand-written because skada's ``DomainClassifier`` ends in a softmax over one
    output (a constant) and has one hidden layer; pytorch-adapt's does not install beside our
    torchmetrics (it pins torchmetrics==0.9.3).

    Args:
        in_features: Width of its input.
        hidden: Width of the hidden layers.
    """

    def __init__(self, in_features: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def domain_loss(
    logits_source: torch.Tensor,
    logits_target: torch.Tensor,
    weight_source: torch.Tensor | None = None,
    weight_target: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary cross-entropy of the discriminator: source rows labelled 1, target rows 0,
    each domain's mean weighted equally (optionally per-row weights within a domain)."""

    def mean_bce(logits: torch.Tensor, label: float, weight: torch.Tensor | None) -> torch.Tensor:
        target = torch.full_like(logits, label)
        return F.binary_cross_entropy_with_logits(logits, target, weight=weight)

    return 0.5 * (
        mean_bce(logits_source, 1.0, weight_source) + mean_bce(logits_target, 0.0, weight_target)
    )
