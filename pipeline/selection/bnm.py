"""Batch nuclear-norm (BNM) of the target predictions.

Cui, Wang, Zhuo, Li, Huang & Tian, "Towards Discriminability and Diversity: Batch Nuclear-norm
Maximization under Label Insufficient Situations", CVPR 2020: the nuclear norm of the (n, C)
prediction matrix, ``||P||_* / n``, grows with both confidence and class diversity (it bounds the
Frobenius norm and approximates the rank). Used as a validator by Musgrave et al. (2022).
"""

from __future__ import annotations

import torch

from pipeline.selection.base import EpochOutputs, Validator


class BatchNuclearNorm(Validator):
    """Nuclear norm of the target prediction matrix divided by its number of rows."""

    def __call__(self, out: EpochOutputs) -> float:
        p = out.target_probs
        return float(torch.linalg.matrix_norm(p, ord="nuc") / len(p))
