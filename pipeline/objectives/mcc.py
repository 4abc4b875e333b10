"""MCC: minimum class confusion on the unlabelled target predictions.

Jin, Wang, Long & Wang, "Minimum Class Confusion for Versatile Domain Adaptation", ECCV 2020.
With Y the temperature-scaled softmax predictions of a target batch (N, C) and W the certainty
weights ``N (1 + exp(-H(y_i))) / sum_j (1 + exp(-H(y_j)))``, the class confusion matrix
``C = Y^T W Y`` is normalised per class and the loss is the mean off-diagonal mass,

    L_MCC = (1/C) sum_j sum_{j' != j} |C~_{jj'}|,

which pushes the classifier to separate classes on the target without target labels. The loss is
skada's ``mcc_loss`` (BSD-3); this module only wires it to the unlabelled stream.
"""

from __future__ import annotations

import torch

from pipeline.objectives.base import Objective, StepOutputs


class MCC(Objective):
    """Minimum class confusion on the unlabelled stream's logits.

    Args:
        temperature: Probability rescaling temperature (2.5 in the paper).
        weight: Trade-off of the term in the total loss.
    """

    reads = ("unlabelled",)

    def __init__(self, temperature: float = 2.5, weight: float = 1.0) -> None:
        super().__init__(weight)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, step: StepOutputs) -> torch.Tensor:
        from skada.deep.losses import mcc_loss

        return mcc_loss(step.logits["unlabelled"], T=self.temperature)
