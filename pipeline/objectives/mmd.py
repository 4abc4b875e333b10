"""DAN: multi-kernel maximum mean discrepancy between source and target features.

Long, Cao, Wang & Jordan, "Learning Transferable Features with Deep Adaptation Networks", ICML
2015. The step adds ``w * MK-MMD^2(f_source, f_target)`` with the kernel a mixture of Gaussians
``k(a, b) = (1/m) sum_u exp(-||a - b||^2 / (s_u * sigma^2))``, ``sigma^2`` the mean pairwise
squared distance of the pooled batch (detached) and ``s_u`` the bandwidth multipliers. The
unbiased quadratic estimate (Gretton et al., JMLR 2012, eq. 3) is used; the paper's linear-time
estimate trades variance for speed on large batches, which ours are not. Uniform kernel weights
replace the paper's per-step quadratic program for them (as TLlib's and most re-implementations
do). We align the pooled features, the layer our backbones share (the paper aligns fc6-fc8).

Hand-written: skada's ``dan_loss`` uses ``exp(-||a - b|| / sigma)`` (a Laplacian kernel on the
unsquared distance, not the paper's Gaussian) and the biased estimate; pytorch-adapt's
``MMDLoss`` does not install beside our torchmetrics (it pins torchmetrics==0.9.3).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pipeline.objectives.base import Objective, StepOutputs

DEFAULT_MULTIPLIERS = (0.125, 0.25, 0.5, 1.0, 2.0)


def mk_mmd2(
    x: torch.Tensor, y: torch.Tensor, multipliers: Sequence[float] = DEFAULT_MULTIPLIERS
) -> torch.Tensor:
    """Unbiased MMD^2 of samples ``x`` (m, d) and ``y`` (n, d), m, n >= 2, under a uniform mixture
    of Gaussian kernels with bandwidths ``multipliers`` times the mean squared distance."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"MMD needs at least 2 rows per sample, got {m} and {n}")
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).pow(2)
    base = d2.detach().sum() / (len(z) * (len(z) - 1))
    base = base.clamp_min(1e-12)
    k = sum(torch.exp(-d2 / (s * base)) for s in multipliers) / len(multipliers)
    k = k - torch.diag_embed(torch.diagonal(k))  # the unbiased estimate skips i == j
    kxx, kyy, kxy = k[:m, :m], k[m:, m:], k[:m, m:]
    return kxx.sum() / (m * (m - 1)) + kyy.sum() / (n * (n - 1)) - 2 * kxy.mean()


class MKMMD(Objective):
    """DAN's MK-MMD between the pooled features of the source and unlabelled streams.

    Args:
        multipliers: Bandwidth multipliers of the Gaussian kernels (of the mean squared distance).
        weight: Trade-off of the term in the total loss.
    """

    reads = ("source", "unlabelled")

    def __init__(
        self, multipliers: Sequence[float] = DEFAULT_MULTIPLIERS, weight: float = 1.0
    ) -> None:
        super().__init__(weight)
        if not multipliers or any(s <= 0 for s in multipliers):
            raise ValueError(f"multipliers must be a non-empty list of numbers > 0: {multipliers}")
        self.multipliers = tuple(float(s) for s in multipliers)

    def forward(self, step: StepOutputs) -> torch.Tensor:
        return mk_mmd2(step.features["source"], step.features["unlabelled"], self.multipliers)
