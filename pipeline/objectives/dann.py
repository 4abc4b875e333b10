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
from pipeline.objectives.adversarial import AdversarialObjective, domain_loss
from pipeline.objectives.base import StepOutputs


class DANN(AdversarialObjective):
    """Domain-adversarial loss on the pooled features of the source and unlabelled streams.

    Args:
        hidden: Width of the discriminator's hidden layers.
        gamma: Steepness of the reversal schedule (10 in the paper).
        max_coefficient: The reversal coefficient's final value (1 in the paper).
        weight: Trade-off of the term in the total loss.
    """

    def setup(self, model: GroupedNet) -> None:
        self.build_discriminator(model.feature_dim)

    def forward(self, step: StepOutputs) -> torch.Tensor:
        f = torch.cat([step.features["source"], step.features["unlabelled"]])
        d = self.discriminate(f, step.progress)
        n = len(step.features["source"])
        return domain_loss(d[:n], d[n:])
