"""Soft neighbourhood density (SND) of the target predictions.

Saito, Kim, Teterwak, Sclaroff, Darrell & Saenko, "Tune it the Right Way: Unsupervised
Validation of Domain Adaptation via Soft Neighborhood Density", ICCV 2021. With ``p_i`` the
L2-normalised softmax predictions, the similarities ``s_ij = p_i . p_j`` (i != j) are turned into
neighbour distributions ``P_ij = softmax_j(s_ij / tau)`` and

    SND = (1/n) sum_i H(P_i),

high when every target point has many close neighbours (dense, well-clustered predictions).
``tau = 0.05`` as in the paper.

Hand-written (a few lines) because skada's ``SoftNeighborhoodDensity`` is a scikit-learn scorer
that re-runs an estimator's ``predict_proba``; ours scores the outputs already computed each epoch.
"""

from __future__ import annotations

import torch

from pipeline.selection.base import EpochOutputs, Validator, entropies


class SoftNeighborhoodDensity(Validator):
    """Mean entropy of the soft-neighbour distributions of the target predictions.

    Args:
        temperature: The softmax temperature ``tau``.
    """

    def __init__(self, temperature: float = 0.05) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def __call__(self, out: EpochOutputs) -> float:
        p = torch.nn.functional.normalize(out.target_probs, dim=1)
        s = p @ p.T / self.temperature
        s.fill_diagonal_(-torch.inf)  # a point is not its own neighbour
        return float(entropies(torch.softmax(s, dim=1)).mean())
