"""Cross-entropy on a labelled stream, with optional label smoothing.

Label smoothing: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision",
CVPR 2016.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.objectives.base import Objective, StepOutputs


class CrossEntropy(Objective):
    """Mean cross-entropy of the head's logits on ``stream``'s labels.

    Args:
        stream: The labelled stream (``target`` or ``source``).
        label_smoothing: Share of probability mass spread uniformly over the classes.
        weight: Multiplies the term in the total loss.
    """

    def __init__(
        self, stream: str = "target", label_smoothing: float = 0.0, weight: float = 1.0
    ) -> None:
        super().__init__(weight)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.stream, self.label_smoothing = stream, label_smoothing
        self.reads = self.labels = (stream,)

    def forward(self, step: StepOutputs) -> torch.Tensor:
        s = self.stream
        return F.cross_entropy(step.logits[s], step.y[s], label_smoothing=self.label_smoothing)

    @staticmethod
    def of_members(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Every ensemble member's mean cross-entropy (no label smoothing), ``(S,)``, from
        logits ``(B, S, K)`` and labels ``(B, S)``, in one call.

        Its gradient is bitwise the one of ``F.cross_entropy`` called per member (on the CPU,
        for every shape and scale tried: see ``tests/test_ensemble.py``); its value may differ
        from it in the last float bits, because ``F.cross_entropy``'s mean sums in another
        order.
        """
        b, s, k = logits.shape
        flat = F.cross_entropy(logits.reshape(b * s, k), y.reshape(-1), reduction="none")
        return flat.view(b, s).mean(0)
