"""Information maximisation (IM) on the target predictions.

Gomes, Krause & Perona, "Discriminative Clustering by Regularized Information Maximization",
NeurIPS 2010: the mutual information between inputs and predicted classes,

    IM = H(mean_i p_i) - mean_i H(p_i),

high when every prediction is confident (low conditional entropy) *and* the classes are used
evenly (high marginal entropy). Used as a domain-adaptation validator by Musgrave et al. (2022).
"""

from __future__ import annotations

from pipeline.selection.base import EpochOutputs, Validator, entropies


class InformationMaximization(Validator):
    """Marginal entropy minus mean conditional entropy of the target predictions (nats)."""

    def __call__(self, out: EpochOutputs) -> float:
        p = out.target_probs
        return float(entropies(p.mean(0, keepdim=True))[0] - entropies(p).mean())
