"""Plain settings of one training run, validated where they are built."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pipeline.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class FitSettings:
    """How to train one classifier.

    Attributes:
        epochs: Passes over the training data.
        batch_size: Examples per step.
        head_lr: Learning rate of the head.
        backbone_lr: Learning rate of the last trainable group (see ``lr_decay``).
        lr_decay: Per-group learning-rate decay towards the input, in (0, 1].
        weight_decay: Decoupled (AdamW) or L2 (SGD) weight decay.
        optimizer: ``sgd`` (Nesterov momentum 0.9) or ``adamw``.
        freeze_groups: Number of leading layer groups kept frozen.
        l2sp_alpha: L2-SP pull towards the starting backbone weights (0 disables L2-SP).
        l2sp_beta: L2-SP weight decay on the head.
        shift: Random image shift augmentation in pixels (0: none).
        label_smoothing: Cross-entropy label smoothing.
        seed: Seed of initialisation and batch order.
        section: Config section the settings came from, for error messages.
    """

    epochs: int
    batch_size: int
    head_lr: float
    backbone_lr: float
    lr_decay: float = 1.0
    weight_decay: float = 0.0
    optimizer: str = "sgd"
    freeze_groups: int = 0
    l2sp_alpha: float = 0.0
    l2sp_beta: float = 0.0
    shift: int = 0
    label_smoothing: float = 0.0
    seed: int = 0
    section: str = field(default="transfer", compare=False, repr=False)

    def __post_init__(self) -> None:
        checks = [
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("head_lr", self.head_lr > 0, "a number > 0"),
            ("backbone_lr", self.backbone_lr > 0, "a number > 0"),
            ("weight_decay", self.weight_decay >= 0, "a number >= 0"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
            ("l2sp_alpha", self.l2sp_alpha >= 0, "a number >= 0"),
            ("shift", self.shift >= 0, "an integer >= 0"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"{self.section}.{name}", getattr(self, name), allowed)

    def as_dict(self) -> dict:
        out = asdict(self)
        del out["section"]
        return out
