"""Plain settings of one training run, validated where they are built.

The optimiser and the learning-rate schedule are factories (``_target_`` + ``_partial_`` in
conf/): ``optimizer(param_groups) -> Optimizer`` and ``scheduler(optimizer, epochs) ->
LRScheduler``, so any torch optimiser or schedule plugs in without code.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields

import torch

from pipeline.errors import ConfigError

OptimizerFactory = Callable[[list[dict]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

sgd_nesterov: OptimizerFactory = functools.partial(torch.optim.SGD, momentum=0.9, nesterov=True)


def cosine(optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing to 0 over the run's epochs (Loshchilov & Hutter, "SGDR", ICLR 2017)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))


def constant(optimizer: torch.optim.Optimizer, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """No schedule: every group keeps its learning rate."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


@dataclass(frozen=True)
class FitSettings:
    """How to train one network.

    Attributes:
        epochs: Passes over the driver stream (see :mod:`pipeline.data.streams`).
        batch_size: Examples per step and stream.
        head_lr: Learning rate of the head (and, by default, of an objective's own parameters).
        backbone_lr: Learning rate of the last trainable group (see ``lr_decay``).
        lr_decay: Per-group learning-rate decay towards the input, in (0, 1].
        weight_decay: Decoupled (AdamW) or L2 (SGD) weight decay.
        optimizer: ``param_groups -> Optimizer`` (default: SGD, Nesterov momentum 0.9).
        scheduler: ``(optimizer, epochs) -> LRScheduler`` (default: cosine annealing).
        freeze_groups: Number of leading layer groups kept frozen.
        augment: Optional ``(batch, generator) -> batch`` random augmentation of training batches
            (it rules out frozen-prefix caching).
        seed: Seed of initialisation and batch order.
        steps_per_epoch: Cap on the steps of an epoch (None: one pass over the driver stream);
            a large source stream makes a pass too long to validate between.
        monitor: Logged validation metric whose best epoch is kept (``val/acc``, or an
            unsupervised validator's ``val/<name>``); None keeps the last epoch (fixed length).
        section: Config section the settings came from, for error messages.
        origins: The config key each setting came from where it is not ``<section>.<name>``
            (an arm's own value, ``pretrain.lr`` for both learning rates), for error messages.
    """

    epochs: int
    batch_size: int
    head_lr: float
    backbone_lr: float
    lr_decay: float = 1.0
    weight_decay: float = 0.0
    optimizer: OptimizerFactory = sgd_nesterov
    scheduler: SchedulerFactory = cosine
    freeze_groups: int = 0
    augment: Augment | None = None
    seed: int = 0
    steps_per_epoch: int | None = None
    monitor: str | None = "val/acc"
    section: str = field(default="transfer", compare=False, repr=False)
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    def key(self, name: str) -> str:
        """The config key that setting ``name`` came from."""
        return self.origins.get(name, f"{self.section}.{name}")

    def __post_init__(self) -> None:
        checks = [
            ("epochs", _int(self.epochs) and self.epochs >= 1, "an integer >= 1"),
            ("batch_size", _int(self.batch_size) and self.batch_size >= 1, "an integer >= 1"),
            ("head_lr", _num(self.head_lr) and self.head_lr > 0, "a number > 0"),
            ("backbone_lr", _num(self.backbone_lr) and self.backbone_lr > 0, "a number > 0"),
            ("lr_decay", _num(self.lr_decay) and 0 < self.lr_decay <= 1, "a number in (0, 1]"),
            ("weight_decay", _num(self.weight_decay) and self.weight_decay >= 0, "a number >= 0"),
            ("optimizer", callable(self.optimizer), "an optimizer factory (_target_, _partial_)"),
            ("scheduler", callable(self.scheduler), "a scheduler factory (_target_, _partial_)"),
            (
                "steps_per_epoch",
                self.steps_per_epoch is None
                or (_int(self.steps_per_epoch) and self.steps_per_epoch >= 1),
                "null or an integer >= 1",
            ),
            (
                "monitor",
                self.monitor is None
                or (isinstance(self.monitor, str) and self.monitor.startswith("val/")),
                "null (last epoch) or a validation metric 'val/<name>'",
            ),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ConfigError(self.key(name), getattr(self, name), allowed)

    def as_dict(self) -> dict:
        """The settings as loggable values (factories by their import path and arguments)."""
        return {
            f.name: describe(getattr(self, f.name))
            for f in fields(self)
            if f.name not in ("section", "origins")
        }


def describe(value: object) -> object:
    """A readable, stable description of a setting (callables by import path and arguments)."""
    if isinstance(value, functools.partial):
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(value.keywords.items()))
        return f"{describe(value.func)}({args})"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    if callable(value):
        return f"{type(value).__module__}.{type(value).__qualname__}({vars(value)})"
    return value


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
