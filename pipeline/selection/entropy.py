"""Prediction entropy on the target: confident target predictions score higher.

Morerio, Cavazza & Murino, "Minimal-Entropy Correlation Alignment for Unsupervised Deep Domain
Adaptation", ICLR 2018, select hyperparameters by the mean target entropy
``(1/n) sum_i H(p_i)``; the score is its negative (higher is better). A model that collapses onto
one class is confident too, which the information-maximisation validator guards against.
"""

from __future__ import annotations

from pipeline.selection.base import EpochOutputs, Validator, entropies


class Entropy(Validator):
    """Negative mean entropy of the target predictions."""

    def __call__(self, out: EpochOutputs) -> float:
        return -float(entropies(out.target_probs).mean())
