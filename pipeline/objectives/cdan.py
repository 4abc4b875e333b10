"""CDAN and CDAN+E: domain-adversarial training conditioned on the classifier's predictions.

Long, Cao, Wang & Jordan, "Conditional Adversarial Domain Adaptation", NeurIPS 2018. The
discriminator sees the multilinear map ``h = f (x) g`` of the features ``f`` and the softmax
predictions ``g`` (the outer product, flattened), so it aligns the joint distribution of features
and classes instead of the features alone. When ``D * C`` exceeds ``max_dim`` the randomised map
``(R_f f) * (R_g g) / sqrt(d)`` with fixed Gaussian matrices replaces it (the paper's Sec. 3.3).
CDAN+E (``entropy=True``) weights each example by ``1 + exp(-H(g))``, normalised within each
domain, so confidently predicted examples dominate (the paper's eq. 7). As in the paper's code,
``g`` is not trained through this term (it is detached) and the gradient reversal follows DANN's
schedule.
"""

from __future__ import annotations

import torch

from pipeline.models.grouped import GroupedNet
from pipeline.objectives.adversarial import AdversarialObjective, domain_loss
from pipeline.objectives.base import StepOutputs


def entropy_weights(probs: torch.Tensor) -> torch.Tensor:
    """``1 + exp(-H(p))`` per row, scaled to mean 1 (CDAN+E's certainty weights)."""
    h = -(probs * torch.log(probs.clamp_min(1e-12))).sum(1)
    w = 1.0 + torch.exp(-h)
    return w / w.mean()


class CDAN(AdversarialObjective):
    """Conditional domain-adversarial loss on the source and unlabelled streams.

    Args:
        entropy: Weight examples by prediction certainty (CDAN+E).
        hidden: Width of the discriminator's hidden layers.
        max_dim: Largest ``D * C`` for the exact multilinear map; beyond it the randomised map.
        random_dim: Output width of the randomised map.
        gamma: Steepness of the reversal schedule.
        max_coefficient: The reversal coefficient's final value.
        weight: Trade-off of the term in the total loss.
    """

    def __init__(
        self,
        entropy: bool = False,
        hidden: int = 256,
        max_dim: int = 4096,
        random_dim: int = 1024,
        gamma: float = 10.0,
        max_coefficient: float = 1.0,
        weight: float = 1.0,
    ) -> None:
        super().__init__(hidden, gamma, max_coefficient, weight)
        if min(max_dim, random_dim) < 1:
            raise ValueError(f"max_dim and random_dim must be >= 1, got {max_dim}, {random_dim}")
        self.entropy, self.max_dim, self.random_dim = bool(entropy), max_dim, random_dim
        self.randomized = False

    def setup(self, model: GroupedNet) -> None:
        d, c = model.feature_dim, model.num_classes
        self.randomized = d * c > self.max_dim
        if self.randomized:
            # fixed (not trained) projections, seeded so every run draws the same ones
            g = torch.Generator().manual_seed(0)
            self.register_buffer("r_f", torch.randn(d, self.random_dim, generator=g))
            self.register_buffer("r_g", torch.randn(c, self.random_dim, generator=g))
        self.build_discriminator(self.random_dim if self.randomized else d * c)

    def multilinear(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The (randomised) multilinear map of features ``f`` (N, D) and predictions ``g``."""
        if self.randomized:
            return (f @ self.r_f) * (g @ self.r_g) / self.random_dim**0.5
        return torch.bmm(g.unsqueeze(2), f.unsqueeze(1)).flatten(1)

    def forward(self, step: StepOutputs) -> torch.Tensor:
        f = torch.cat([step.features["source"], step.features["unlabelled"]])
        logits = torch.cat([step.logits["source"], step.logits["unlabelled"]])
        g = torch.softmax(logits, dim=1).detach()
        d = self.discriminate(self.multilinear(f, g), step.progress)
        n = len(step.features["source"])
        if not self.entropy:
            return domain_loss(d[:n], d[n:])
        return domain_loss(d[:n], d[n:], entropy_weights(g[:n]), entropy_weights(g[n:]))
