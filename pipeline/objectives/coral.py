"""Deep CORAL: align the second-order statistics of source and target features.

Sun & Saenko, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation", ECCV Workshops
2016. With C_S and C_T the feature covariances of a source and a target batch and d the feature
width, the step adds

    L_CORAL = ||C_S - C_T||_F^2 / (4 d^2).

The loss is skada's ``deepcoral_loss`` (BSD-3); this module only wires it to the streams.
"""

from __future__ import annotations

import torch

from pipeline.objectives.base import Objective, StepOutputs


class CORAL(Objective):
    """Deep CORAL between the pooled features of the source and unlabelled streams.

    Args:
        weight: Trade-off of the term in the total loss.
    """

    reads = ("source", "unlabelled")

    def forward(self, step: StepOutputs) -> torch.Tensor:
        from skada.deep.losses import deepcoral_loss

        return deepcoral_loss(step.features["source"], step.features["unlabelled"])
