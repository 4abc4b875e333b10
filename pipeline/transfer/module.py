"""The LightningModule that trains a :class:`GroupedNet` on a sum of objectives."""

from __future__ import annotations

import math

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import TrainingError
from pipeline.models.grouped import GroupedNet
from pipeline.objectives import Objective, StepOutputs
from pipeline.transfer.freezing import freeze, keep_frozen_eval
from pipeline.transfer.settings import FitSettings


class TransferModule(L.LightningModule):
    """Trains ``model`` on the sum of ``objectives``, its first ``freeze_groups`` groups frozen.

    Each step receives one batch per stream (``{name: (x, y)}``), runs them through the network
    as one batch and hands every objective the per-stream features and logits
    (:class:`pipeline.objectives.StepOutputs`).

    Args:
        model: The network; frozen groups keep their BatchNorm statistics.
        objectives: Loss terms by name (their weights multiply them in the sum).
        settings: Optimisation settings.
        start: Index of the first group the inputs go through. 0 for raw inputs; k when the inputs
            are cached activations of the frozen prefix (see :mod:`pipeline.transfer.prefix_cache`).
        driver: The labelled stream that train accuracy is measured on.
    """

    def __init__(
        self,
        model: GroupedNet,
        objectives: dict[str, Objective],
        settings: FitSettings,
        start: int = 0,
        driver: str = "target",
    ) -> None:
        super().__init__()
        self.model, self.settings, self.start, self.driver = model, settings, start, driver
        self.objectives = nn.ModuleDict(objectives)
        self.frozen = settings.freeze_groups
        freeze(model, self.frozen)
        self._sums = torch.zeros(3)
        self.val_metrics: dict[str, float] = {}

    def train(self, mode: bool = True) -> TransferModule:
        # Lightning calls .train() on the whole module at every epoch; frozen groups must stay in
        # eval mode or their BatchNorm running statistics would drift to the target data.
        super().train(mode)
        if mode:
            keep_frozen_eval(self.model, self.frozen)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, start=self.start)

    def outputs(self, batch: dict[str, tuple[torch.Tensor, torch.Tensor | None]]) -> StepOutputs:
        """The network's features and logits on every stream of ``batch``, in one pass."""
        names = list(batch)
        xs = [batch[n][0] for n in names]
        x = xs[0] if len(xs) == 1 else torch.cat(xs)
        feats = self.model.forward_features(x, self.start)
        logits = self.model.head(feats)
        sizes = [len(v) for v in xs]
        split = (lambda t: [t]) if len(xs) == 1 else (lambda t: t.split(sizes))
        progress = self.current_epoch / max(1, self.settings.epochs)
        return StepOutputs(
            x=dict(zip(names, xs, strict=True)),
            y={n: batch[n][1] for n in names},
            features=dict(zip(names, split(feats), strict=True)),
            logits=dict(zip(names, split(logits), strict=True)),
            model=self.model,
            progress=progress,
        )

    def on_train_epoch_start(self) -> None:
        self._sums = torch.zeros(3, device=self.device)  # loss * n, correct, n

    def training_step(self, batch: dict, _: int) -> torch.Tensor:
        step = self.outputs(batch)
        loss = None
        for objective in self.objectives.values():
            term = objective(step)
            if objective.weight != 1.0:
                term = objective.weight * term
            loss = term if loss is None else loss + term
        # Epoch sums stay on the device and are read once per epoch: a self.log() per step
        # cost more than the forward pass of a small batch (measured in bench_throughput.py).
        with torch.no_grad():
            logits, y = step.logits[self.driver], step.y[self.driver]
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
                f"({s.key('head_lr')}={s.head_lr}, {s.key('backbone_lr')}={s.backbone_lr}) or "
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
        groups = self.model.param_groups(
            self.frozen,
            head_lr=s.head_lr,
            backbone_lr=s.backbone_lr,
            lr_decay=s.lr_decay,
            weight_decay=s.weight_decay,
        )
        for objective in self.objectives.values():
            groups += objective.param_groups(s.head_lr, s.weight_decay)
        optimizer = s.optimizer(groups)
        return {"optimizer": optimizer, "lr_scheduler": s.scheduler(optimizer, s.epochs)}
