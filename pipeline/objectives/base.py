"""The contract of a training objective and what a step hands it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from pipeline.models.grouped import GroupedNet

#: The batches a step can draw: labelled target, labelled source, unlabelled target.
STREAMS = ("target", "source", "unlabelled")


@dataclass
class StepOutputs:
    """One training step's batches and the network's outputs on them, per stream.

    All streams of a step go through the network as one batch (so BatchNorm sees them together,
    as in TLlib's DANN), then are split back by stream.

    Attributes:
        x: Inputs as fed to the network: images, or the frozen prefix's cached activations
            (for a cached linear probe, the pooled features themselves); an objective that
            needs images must not rely on it.
        y: Labels; None for an unlabelled stream.
        features: Pooled features, (n, D) per stream.
        logits: Head outputs, (n, C) per stream.
        model: The network being trained.
        progress: Fraction of training done, in [0, 1] (for schedules such as DANN's).
    """

    x: dict[str, torch.Tensor]
    y: dict[str, torch.Tensor | None]
    features: dict[str, torch.Tensor]
    logits: dict[str, torch.Tensor]
    model: GroupedNet
    progress: float = 0.0


class Objective(nn.Module):
    """One additive term of the training loss.

    Subclasses set :attr:`reads` (streams whose batches the term needs) and :attr:`labels`
    (those of them whose labels it needs), implement :meth:`forward`, and may override
    :meth:`setup` (called once with the initialised network, before training: build what depends
    on it there) and :meth:`param_groups` (the term's own trainable parameters).

    In an ensemble (:func:`pipeline.transfer.fit.fit_ensemble`) every member has its own
    instance and its own :class:`StepOutputs`, so a term is always written for one network
    (plain :class:`~pipeline.objectives.cross_entropy.CrossEntropy`, when it is every member's
    only term, is computed for all members in one call without its ``forward``). A term
    that draws random numbers from torch's global generator would, inside an ensemble, draw from
    one stream shared by all members (not the sequence it draws when its member trains alone):
    such a term sets :attr:`unvectorised` to the reason, and its arm trains one seed at a time.

    Args:
        weight: Multiplies the term in the total loss.
    """

    reads: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    #: Why this term cannot train inside an ensemble (logged); empty when it can.
    unvectorised: ClassVar[str] = ""

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)

    def setup(self, model: GroupedNet) -> None:
        """Prepare for training ``model`` (e.g. snapshot its weights, size a discriminator)."""

    def forward(self, step: StepOutputs) -> torch.Tensor:
        """The term's (unweighted) value on one step."""
        raise NotImplementedError

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimiser groups of the term's own trainable parameters (none by default).

        Args:
            lr: The head's learning rate, the default for the term's parameters.
            weight_decay: The run's weight decay.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return []
        return [
            {"name": type(self).__name__, "params": params, "lr": lr, "weight_decay": weight_decay}
        ]
