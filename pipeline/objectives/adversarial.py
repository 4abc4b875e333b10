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

from pipeline.objectives.base import Objective


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


class AdversarialObjective(Objective):
    """Base of DANN and CDAN: a discriminator on some representation of the source and
    unlabelled streams, fed through the scheduled gradient reversal layer.

    Args:
        hidden: Width of the discriminator's hidden layers.
        gamma: Steepness of the reversal schedule (10 in the paper).
        max_coefficient: The reversal coefficient's final value (1 in the paper).
        weight: Trade-off of the term in the total loss.
    """

    reads = ("source", "unlabelled")

    def __init__(
        self,
        hidden: int = 256,
        gamma: float = 10.0,
        max_coefficient: float = 1.0,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight)
        if hidden < 1 or gamma <= 0 or max_coefficient <= 0:
            raise ValueError(
                f"hidden must be >= 1, gamma and max_coefficient > 0; got {hidden}, {gamma}, "
                f"{max_coefficient}"
            )
        self.hidden, self.gamma, self.max_coefficient = hidden, gamma, max_coefficient

    def build_discriminator(self, in_features: int) -> None:
        self.discriminator = DomainDiscriminator(in_features, self.hidden)

    def discriminate(self, h: torch.Tensor, progress: float) -> torch.Tensor:
        """Domain logits of ``h`` through the gradient reversal layer at ``progress``."""
        lam = reversal_coefficient(progress, self.gamma, self.max_coefficient)
        return self.discriminator(reverse_gradient(h, lam))
