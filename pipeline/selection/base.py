"""What a validator reads and the contract it follows."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EpochOutputs:
    """A model's outputs at the end of an epoch on the data a validator may read.

    Nothing here carries a target label.

    Attributes:
        target_logits: Logits on unlabelled target inputs, (n, C).
        target_features: Pooled features on them, (n, D).
        source_logits: Logits on the labelled source validation split, (m, C), or None.
        source_features: Pooled features on it, (m, D), or None.
        source_labels: Its labels, (m,), or None.
        source_train_features: Pooled features on (a sample of) the source training split, or
            None (deep embedded validation fits its density ratio on them).
    """

    target_logits: torch.Tensor
    target_features: torch.Tensor
    source_logits: torch.Tensor | None = None
    source_features: torch.Tensor | None = None
    source_labels: torch.Tensor | None = None
    source_train_features: torch.Tensor | None = None

    @property
    def has_source(self) -> bool:
        return self.source_logits is not None and self.source_labels is not None

    @property
    def target_probs(self) -> torch.Tensor:
        return torch.softmax(self.target_logits.double(), dim=1)


class Validator:
    """Scores a model from :class:`EpochOutputs`, without target labels; higher is better.

    Subclasses implement :meth:`__call__` and set :attr:`needs_source` when they read the labelled
    source data.
    """

    needs_source: bool = False

    def __call__(self, out: EpochOutputs) -> float:
        raise NotImplementedError


def entropies(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of every row of ``probs``."""
    return -(probs * torch.log(probs.clamp_min(1e-300))).sum(1)
