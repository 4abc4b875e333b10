"""Training objectives: every term of a training loss is a module, chosen by ``_target_``.

A training step sums the terms an arm lists (cross-entropy on labelled target, L2-SP, a domain
discriminator, an alignment or a self-supervised loss): each term owns its parameters (say, a
domain discriminator) and optimiser group, and declares the batches it reads, following TLlib's
design (``DomainAdversarialLoss`` and ``SPRegularization`` are modules the step composes; Jiang
et al., "Transferability in Deep Learning: A Survey", 2022). A new objective is one module here
plus one arm yaml in ``conf/transfer/arm/``: the fit loop, the Lightning module and the settings
never change for it.
"""

from pipeline.objectives.base import STREAMS, Objective, StepOutputs

__all__ = ["STREAMS", "Objective", "StepOutputs"]
