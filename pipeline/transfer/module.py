"""The LightningModule that trains a :class:`GroupedNet` from a given layer group onwards."""

from __future__ import annotations

import math

import lightning.pytorch as L
import torch
import torch.nn.functional as F

from pipeline.errors import TrainingError
from pipeline.models.grouped import GroupedNet
from pipeline.transfer.freezing import freeze, keep_frozen_eval, param_groups
from pipeline.transfer.l2sp import L2SP
from pipeline.transfer.settings import FitSettings


class ClassifierModule(L.LightningModule):
    """Cross-entropy training of ``model`` with its first ``settings.freeze_groups`` groups frozen.

    Args:
        model: The network; frozen groups keep their BatchNorm statistics.
        settings: Optimisation settings.
        start: Index of the first group the inputs go through. 0 for images; k when the inputs
            are cached activations of the frozen prefix (see :mod:`pipeline.transfer.prefix_cache`).
        l2sp: Optional L2-SP penalty added to the loss.
    """

    def __init__(
        self,
        model: GroupedNet,
        settings: FitSettings,
        start: int = 0,
        l2sp: L2SP | None = None,
    ) -> None:
        super().__init__()
        self.model, self.settings, self.start, self.l2sp = model, settings, start, l2sp
        self.frozen = settings.freeze_groups
        freeze(model, self.frozen)
        self._sums = torch.zeros(3)
        self.val_metrics: dict[str, float] = {}

    def train(self, mode: bool = True) -> ClassifierModule:
        # Lightning calls .train() on the whole module at every epoch; frozen groups must stay in
        # eval mode or their BatchNorm running statistics would drift to the target data.
        super().train(mode)
        if mode:
            keep_frozen_eval(self.model, self.frozen)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, start=self.start)

    def on_train_epoch_start(self) -> None:
        self._sums = torch.zeros(3, device=self.device)  # loss * n, correct, n

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.settings.label_smoothing)
        if self.l2sp is not None:
            loss = loss + self.l2sp(self.model)
        # Epoch sums stay on the device and are logged once per epoch: a self.log() per step
        # cost more than the forward pass of a small batch (measured in bench_throughput.py).
        with torch.no_grad():
            correct = (logits.argmax(dim=1) == y).sum()
            self._sums += torch.stack([loss.detach() * len(y), correct, y.new_tensor(len(y))])
        return loss

    def train_epoch_metrics(self) -> dict[str, float]:
        """This epoch's mean training loss and accuracy; raises on a NaN/inf loss.

        Read once per epoch (one host sync) by :meth:`on_train_epoch_end` and by callbacks, which
        Lightning calls before the module's own hook.
        """
        loss_sum, correct, seen = self._sums.tolist()
        if not math.isfinite(loss_sum):
            s = self.settings
            raise TrainingError(
                f"loss became NaN/inf in epoch {self.current_epoch}: lower the learning rates "
                f"({s.section}.head_lr={s.head_lr}, {s.section}.backbone_lr={s.backbone_lr}) or "
                "check the data for NaN values"
            )
        return {"train/loss": loss_sum / seen, "train/acc": correct / seen}

    def on_train_epoch_end(self) -> None:
        # Lightning runs validation before this hook, so the epoch's metrics are all known here.
        # Only val/acc goes through self.log (callbacks, the progress bar and checkpointing read
        # it); the rest goes to the loggers directly, at the step Lightning uses for epoch-end
        # metrics: each self.log() cost ~0.4 ms of Lightning bookkeeping, a quarter of its
        # per-epoch overhead on the small target runs (measured in bench_throughput.py).
        metrics = {**self.train_epoch_metrics(), **self.val_metrics}
        metrics.pop("val/acc", None)
        for logger in self.loggers:
            logger.log_metrics(metrics, step=self.global_step)

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(3, device=self.device)  # loss * n, correct, n

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, reduction="sum")
        correct = (logits.argmax(dim=1) == y).sum()
        self._val_sums += torch.stack([loss, correct, y.new_tensor(len(y))])

    def on_validation_epoch_end(self) -> None:
        loss_sum, correct, seen = self._val_sums.tolist()
        self.val_metrics = {"val/acc": correct / seen, "val/loss": loss_sum / seen}
        self.log("val/acc", correct / seen, prog_bar=True)

    def configure_optimizers(self) -> dict:
        s = self.settings
        groups = param_groups(
            self.model,
            self.frozen,
            head_lr=s.head_lr,
            backbone_lr=s.backbone_lr,
            lr_decay=s.lr_decay,
            weight_decay=s.weight_decay,
        )
        if s.optimizer == "sgd":
            opt = torch.optim.SGD(groups, momentum=0.9, nesterov=True)
        else:
            opt = torch.optim.AdamW(groups)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, s.epochs))
        return {"optimizer": opt, "lr_scheduler": sched}
