"""DANN: domain-adversarial training of the features.

Ganin, Ustinova, Ajakan, Germain, Larochelle, Laviolette, Marchand & Lempitsky,
"Domain-Adversarial Training of Neural Networks", JMLR 2016. A discriminator D learns to tell
source features from target features; the features are trained to fool it through a gradient
reversal layer, so the step minimises

    L = CE(source) + w * BCE(D(R_lambda(f)), domain),

with R_lambda the reversal layer and lambda following the paper's schedule
(:func:`pipeline.objectives.adversarial.reversal_coefficient`). This term is the second part; the
arm lists cross-entropy on the ``source`` stream beside it.
"""

from __future__ import annotations

import torch

from pipeline.models.grouped import GroupedNet
from pipeline.objectives.adversarial import (
    DomainDiscriminator,
    domain_loss,
    reversal_coefficient,
    reverse_gradient,
)
from pipeline.objectives.base import Objective, StepOutputs


class DANN(Objective):
    """Domain-adversarial loss on the pooled features of the source and unlabelled streams.

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

    def setup(self, model: GroupedNet) -> None:
        self.discriminator = DomainDiscriminator(model.feature_dim, self.hidden)

    def forward(self, step: StepOutputs) -> torch.Tensor:
        lam = reversal_coefficient(step.progress, self.gamma, self.max_coefficient)
        f = torch.cat([step.features["source"], step.features["unlabelled"]])
        d = self.discriminator(reverse_gradient(f, lam))
        n = len(step.features["source"])
        return domain_loss(d[:n], d[n:])
