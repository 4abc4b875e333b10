"""The LightningModule that trains one network, or an ensemble of them, on a sum of objectives,
and the callbacks that keep each member's history and best weights."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Sequence
from itertools import chain

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.nn.modules import module as torch_module

from pipeline import stops
from pipeline.errors import TrainingError
from pipeline.models.grouped import GroupedNet
from pipeline.models.predict import inference_batch
from pipeline.objectives import Objective, StepOutputs
from pipeline.objectives.cross_entropy import CrossEntropy
from pipeline.transfer.freezing import freeze, keep_frozen_eval
from pipeline.transfer.settings import FitSettings
from pipeline.transfer.widen import link, to_wide

Batch = dict[str, tuple[torch.Tensor, torch.Tensor | None]]

#: Bytes of pooled features and logits (every member's) in one validation chunk of a cached
#: linear probe.
#: 10 members' validation on 10,000 rows of 768 features (10 classes) took 36 ms in chunks of
#: 4 MiB, 48 ms of 1 MiB, 81 ms of 256 KiB (and before, in chunks of 25 rows), and 126 ms and
#: +294 MiB of memory at once; 200 rows of 32 features fit in one chunk.
FEATURE_CHUNK_BYTES = 4 * 2**20


class TransferModule(L.LightningModule):
    """Trains S members (one network, or paired seeds of one arm) on their sums of objectives,
    their first ``freeze_groups`` groups frozen.

    Each step receives one batch per stream stacked over members (``{name: (x, y)}``, ``x`` of
    shape ``(B, S, ...)``, member i's batch at ``[:, i]``). All streams of a member go through
    its network as one batch; all members go through ``wide`` (see
    :mod:`pipeline.transfer.widen`) in one pass when given, else one after another. Every
    objective then gets its own member's per-stream features and logits
    (:class:`pipeline.objectives.StepOutputs`), so objectives are written for one network;
    when every member's only term is plain cross-entropy, one
    :meth:`~pipeline.objectives.cross_entropy.CrossEntropy.of_members` call computes all
    members' instead (the same gradients). The loss is the sum over members, whose gradients
    are each member's own.

    Metrics are kept per member (``member_metrics``, read once per epoch with one host sync) and
    logged to each member's logger; the Trainer's loggers and ``val/acc`` (what callbacks such as
    pruning monitor) get the first member's, as when the members train one by one and the first
    one reports: turning ensembles on or off does not change what a study prunes on.

    Args:
        members: The networks (same architecture); frozen groups keep their BatchNorm statistics.
        objectives: Each member's loss terms by name.
        settings: Each member's settings (they may differ in learning rates and weight decay
            only; the first member's optimiser, schedule and epochs are used).
        start: Index of the first group the inputs go through. 0 for raw inputs; k when the inputs
            are cached activations of the frozen prefix (see :mod:`pipeline.transfer.prefix_cache`).
        driver: The labelled stream that train accuracy is measured on.
        wide: The members as one wide network, or None to run them one after another.
        member_loggers: One Lightning logger (or False) per member.
    """

    def __init__(
        self,
        members: Sequence[GroupedNet],
        objectives: Sequence[dict[str, Objective]],
        settings: Sequence[FitSettings],
        start: int = 0,
        driver: str = "target",
        wide: GroupedNet | None = None,
        member_loggers: Sequence[object] = (),
    ) -> None:
        super().__init__()
        self.members = list(members)
        terms = [nn.ModuleDict(o) for o in objectives]
        self.member_objectives = terms
        # one network keeps the checkpoint keys of a plain model ("model.groups.0...")
        self.model = members[0] if len(members) == 1 else nn.ModuleList(members)
        self.objectives = terms[0] if len(terms) == 1 else nn.ModuleList(terms)
        self.wide = wide
        self.settings, self.start, self.driver = list(settings), start, driver
        self.member_loggers = list(member_loggers) or [False] * len(self.members)
        self.frozen = self.settings[0].freeze_groups
        for member in self.members:
            freeze(member, self.frozen)
        # training mode whatever mode the caller left the networks in (Lightning keeps each
        # module's mode at fit start), frozen groups in eval
        self.train()
        s = len(self.members)
        self._sums = torch.zeros(s, 3)
        self._val_sums = torch.zeros(s, 3)
        self.member_metrics: list[dict[str, float]] = []
        self._joint_ce: CrossEntropy | None = None  # decided when training starts
        self._live_metrics = False  # set per fit in on_fit_start
        self._parameters_of_fit: list[nn.Parameter] = []

    def __setattr__(self, name: str, value: object) -> None:
        # Lightning names the running hook in _current_fx_name before each of an epoch's ~80
        # hook calls; nn.Module.__setattr__'s parameter, buffer and submodule checks made that
        # ~0.15 ms an epoch of a small target fit (measured in bench_throughput.py)
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def on_train_start(self) -> None:
        # after the callbacks' on_fit_start and on_train_start: hooks they register are seen
        many = len(self.members) > 1
        self._joint_ce = _only_cross_entropy(self.member_objectives) if many else None

    def on_fit_start(self) -> None:
        self._live_metrics = _writes_kept(self.trainer)  # this fit's Trainer
        # Before each validation Lightning records every submodule's mode (a walk over every
        # member's modules: 4% of a 10-member linear probe) for a restore that it skips when
        # on_validation_model_train is overridden, as it is here: this fit's validation loop
        # gets a recorder that keeps nothing (Lightning 2.6's private attribute; without it,
        # Lightning's own recorder stays)
        val_loop = getattr(self.trainer.fit_loop.epoch_loop, "val_loop", None)
        if hasattr(val_loop, "_module_mode"):
            val_loop._module_mode = _ModesFromTrain()
        self._parameters_of_fit = list(self.parameters())  # after Lightning moved and cast them
        # Lightning may have moved or cast the members (device, "bf16-true"), which gives them
        # new BatchNorm buffers: make them views of the wide network's again
        if self.wide is not None:
            link(self.wide)

    def train(self, mode: bool = True) -> TransferModule:
        # Frozen groups stay in eval mode, or their BatchNorm running statistics would drift to
        # the target data (Lightning restores each module's own mode after validation).
        if self.wide is None:
            super().train(mode)
            nets = self.members
        else:
            # the wide network computes for the members, so only its modes matter: skipping the
            # members' hundreds of modules saves ~1.5 ms an epoch for 10 members
            self.training = mode
            for child in (self.objectives, self.wide):
                child.train(mode)
            nets = [self.wide]
        if mode:
            for net in nets:
                keep_frozen_eval(net, self.frozen)
        return self

    def on_validation_model_train(self) -> None:
        # After validation, Lightning by default restores the mode it captured for every
        # submodule, every member's included: ~1 ms an epoch for 10 members (nn.Module.__setattr__
        # per module). The modes it captured are the ones train() sets, so set them directly.
        self.train()

    def on_validation_model_zero_grad(self) -> None:
        # What Lightning's default does (self.zero_grad(): free every parameter's gradient), over
        # the list of parameters taken at fit start instead of a walk over every module of every
        # member before each validation (a 10-member linear probe 1.02-1.05x faster)
        for p in self._parameters_of_fit:
            p.grad = None

    def transfer_batch_to_device(self, batch: object, device: torch.device, _: int) -> object:
        # the streams already live on the training device (pipeline.data.streams): Lightning's
        # generic walk over every batch to move it cost ~0.25 ms a step
        return batch

    def forward_members(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(B, S, D)`` and logits ``(B, S, K)`` of every member on its ``x[:, i]``."""
        b, s = x.shape[:2]
        if self.wide is not None:
            feats = self.wide.forward_features(to_wide(x), self.start)
            return feats.view(b, s, -1), self.wide.head(feats).view(b, s, -1)
        feats = [m.forward_features(x[:, i], self.start) for i, m in enumerate(self.members)]
        logits = [m.head(f) for m, f in zip(self.members, feats, strict=True)]
        if s == 1:
            return feats[0].unsqueeze(1), logits[0].unsqueeze(1)
        return torch.stack(feats, 1), torch.stack(logits, 1)

    def on_train_batch_end(self, *_: object) -> None:
        # a SIGINT/SIGTERM whose exception Python swallowed (raised inside a finalizer) stops
        # training here instead of being lost
        stops.raise_if_requested()

    def on_train_epoch_start(self) -> None:
        self._sums = torch.zeros(len(self.members), 3, device=self.device)  # loss * n, correct, n

    def training_step(self, batch: Batch, _: int) -> torch.Tensor:
        names = list(batch)
        xs = [batch[n][0] for n in names]
        sizes = [len(v) for v in xs]
        feats, logits = self.forward_members(xs[0] if len(xs) == 1 else torch.cat(xs))
        split = (lambda t: [t]) if len(xs) == 1 else (lambda t: t.split(sizes))
        feats, logits = split(feats), split(logits)
        if self._joint_ce is not None:
            # every member's loss is plain cross-entropy (the default arms, tuning trials): one
            # call for all members instead of one per member and its StepOutputs, 1.14x faster
            # for a 10-member linear probe, with bitwise the same gradients
            ce = self._joint_ce
            d = names.index(ce.stream)
            loss = CrossEntropy.of_members(logits[d], batch[ce.stream][1])
            if ce.weight != 1.0:
                loss = ce.weight * loss
            return self._count(names, batch, logits, loss)
        progress = self.current_epoch / max(1, self.settings[0].epochs)
        losses = []
        for i, (member, terms) in enumerate(zip(self.members, self.member_objectives, strict=True)):
            step = StepOutputs(
                x={n: x[:, i] for n, x in zip(names, xs, strict=True)},
                y={n: None if batch[n][1] is None else batch[n][1][:, i] for n in names},
                features={n: f[:, i] for n, f in zip(names, feats, strict=True)},
                logits={n: g[:, i] for n, g in zip(names, logits, strict=True)},
                model=member,
                progress=progress,
            )
            loss = None
            for objective in terms.values():
                term = objective(step)
                if objective.weight != 1.0:
                    term = objective.weight * term
                loss = term if loss is None else loss + term
            losses.append(loss)
        loss = losses[0] if len(losses) == 1 else torch.stack(losses)
        return self._count(names, batch, logits, loss)

    def _count(
        self, names: list[str], batch: Batch, logits: list[torch.Tensor], loss: torch.Tensor
    ) -> torch.Tensor:
        """Add the step to the epoch's sums; return the loss summed over members."""
        # Epoch sums stay on the device and are read once per epoch: a self.log() per step
        # cost more than the forward pass of a small batch (measured in bench_throughput.py).
        with torch.no_grad():
            d = names.index(self.driver)
            y = batch[self.driver][1]
            correct = (logits[d].argmax(-1) == y).sum(0).float()
            seen = torch.full_like(correct, len(y))
            self._sums += torch.stack([loss.detach().reshape(-1) * len(y), correct, seen], 1)
        return loss.sum()

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(len(self.members), 3, device=self.device)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        x, target = batch  # x (N, S, ...), target (N, S): member i's split at [:, i]
        # One Lightning batch per epoch, run in chunks of inference_batch images (each through
        # every member; fewer images the more members, so a chunk's activations stay a few MB),
        # and Lightning's per-batch bookkeeping (~0.3 ms) is paid once. A cached linear probe's
        # pooled features only go through the head: chunks of FEATURE_CHUNK_BYTES of them
        # (a 10-member probe's 200 validation rows in one, not 8 chunks of 25 images: 1.15x
        # faster)
        chunk = inference_batch(x.device, x.shape[1])
        net = self.members[0]
        if self.start > net.num_groups:  # a row: every member's features and logits
            row = (x[0].numel() + x.shape[1] * net.num_classes) * x.element_size()
            chunk = max(chunk, FEATURE_CHUNK_BYTES // row)
        for xc, tc in zip(x.split(chunk), target.split(chunk), strict=True):
            _, logits = self.forward_members(xc)
            n, s, k = logits.shape
            loss = F.cross_entropy(logits.reshape(n * s, k), tc.reshape(-1), reduction="none")
            correct = (logits.argmax(-1) == tc).sum(0).float()
            seen = torch.full_like(correct, n)
            self._val_sums += torch.stack([loss.view(n, s).sum(0), correct, seen], 1)

    def on_validation_epoch_end(self) -> None:
        # Lightning validates after the epoch's last training step, so the epoch's training sums
        # are complete here: every member's metrics come from this one host sync.
        rows = torch.cat([self._sums, self._val_sums], 1).tolist()
        self.member_metrics = [self._metrics(i, row) for i, row in enumerate(rows)]
        first = self.member_metrics[0]
        self._publish("val/acc", first["val/acc"])
        for logger, metrics in zip(self.member_loggers, self.member_metrics, strict=True):
            if logger:
                logger.log_metrics(metrics, step=self.global_step)
        for logger in self.loggers:
            logger.log_metrics(first, step=self.global_step)

    def _publish(self, name: str, value: float) -> None:
        """Show ``value`` to callbacks (pruning, early stopping, checkpointing) and the progress
        bar, as ``self.log(name, value, prog_bar=True, logger=False)`` would.

        Written into the dicts that ``trainer.callback_metrics`` (a tensor, for callbacks) and
        ``trainer.progress_bar_metrics`` (a float) return. ``self.log`` moved its metric's state
        to the device on every call, deep-copying its metadata: 0.3-0.6 ms an epoch, the largest
        single Lightning cost of a small target epoch (measured in bench_throughput.py). Falls
        back to ``self.log`` where those properties do not return the trainer's own dicts.
        """
        if not self._live_metrics:
            self.log(name, value, prog_bar=True, logger=False)
            return
        # the dtype self.log gives a Python float: float64 only under a float64 default
        dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        self.trainer.callback_metrics[name] = torch.tensor(value, dtype=dtype)
        self.trainer.progress_bar_metrics[name] = value

    def _metrics(self, i: int, row: list[float]) -> dict[str, float]:
        loss_sum, correct, seen, val_loss, val_correct, val_seen = row
        if not math.isfinite(loss_sum):
            s = self.settings[i]
            who = f" (seed {s.seed})" if len(self.members) > 1 else ""
            raise TrainingError(
                f"loss became NaN/inf in epoch {self.current_epoch}{who}: lower the learning "
                f"rates ({s.key('head_lr')}={s.head_lr}, {s.key('backbone_lr')}="
                f"{s.backbone_lr}) or check the data for NaN values"
            )
        return {
            "train/loss": loss_sum / seen,
            "train/acc": correct / seen,
            "val/acc": val_correct / val_seen,
            "val/loss": val_loss / val_seen,
        }

    def configure_optimizers(self) -> dict:
        groups = []
        for i, (member, terms, s) in enumerate(
            zip(self.members, self.member_objectives, self.settings, strict=True)
        ):
            own = member.param_groups(
                self.frozen,
                head_lr=s.head_lr,
                backbone_lr=s.backbone_lr,
                lr_decay=s.lr_decay,
                weight_decay=s.weight_decay,
            )
            for objective in terms.values():
                own += objective.param_groups(s.head_lr, s.weight_decay)
            if len(self.members) > 1:
                for group in own:
                    group["name"] = f"member{i}/{group['name']}"
            groups += own
        s = self.settings[0]
        optimizer = s.optimizer(merge_equal_groups(groups))
        if optimizer.defaults.get("foreach", False) is None:
            # torch's multi-tensor kernels instead of a Python loop over the tensors (S times
            # as many in an ensemble); torch picks them on GPUs only, but on the CPU too SGD's
            # step took 0.08 ms instead of 0.11 ms for the 4-group CNN, with identical weights.
            # An explicit foreach setting is left alone
            for group in optimizer.param_groups:
                group["foreach"] = True
        return {"optimizer": optimizer, "lr_scheduler": s.scheduler(optimizer, s.epochs)}

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # A norm is clipped per member: one norm over all members would couple them.
        if gradient_clip_val is None or len(self.members) == 1:
            super().configure_gradient_clipping(
                optimizer, gradient_clip_val, gradient_clip_algorithm
            )
            return
        for member, terms in zip(self.members, self.member_objectives, strict=True):
            params = [p for p in chain(member.parameters(), terms.parameters()) if p.requires_grad]
            if str(gradient_clip_algorithm).endswith("value"):
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)


# Lightning reads the step methods' signatures at every call (inspect.getfullargspec: ~0.15 ms
# an epoch of a small target fit); inspect takes a precomputed __signature__ as it is.
for _step in (TransferModule.training_step, TransferModule.validation_step):
    _step.__signature__ = inspect.signature(_step)
del _step


def merge_equal_groups(groups: list[dict]) -> list[dict]:
    """Optimiser parameter groups with the same settings (learning rate, weight decay, ...) as
    one group, in the order of their first appearance; names joined with ``+``.

    Every torch optimiser updates each parameter from its own group's settings only, so the
    weights are the same; what changes is the per-group cost of a step (its Python and kernel
    dispatch): one fit has a group per layer group (5 for the 4-group CNN) and an ensemble that
    many per member (50 for 10 members), where the default settings give 2 distinct ones.
    Only plain settings (numbers, strings, booleans, None and tuples of them) are compared;
    a group with any other value (a tensor learning rate, a list) stays as it is.

    Raises:
        ValueError: A parameter is in more than one group (what the optimiser would raise).
    """
    merged: dict[object, dict] = {}
    seen: set[int] = set()
    for i, group in enumerate(groups):
        params = group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        for p in params:
            if id(p) in seen:
                raise ValueError("some parameters appear in more than one parameter group")
            seen.add(id(p))
        settings = {k: v for k, v in group.items() if k not in ("params", "name")}
        key: object = i  # a group of its own unless every setting is plain
        if all(_plain(v) for v in settings.values()):
            key = tuple(sorted((k, type(v).__name__, v) for k, v in settings.items()))
        if key in merged:
            merged[key]["params"] += params
            if "name" in group:
                merged[key]["name"] = f"{merged[key].get('name', '')}+{group['name']}"
        else:
            merged[key] = {**group, "params": params}
    return list(merged.values())


def _plain(value: object) -> bool:
    if isinstance(value, tuple):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str)


def _only_cross_entropy(terms: Sequence[nn.ModuleDict]) -> CrossEntropy | None:
    """The first member's cross-entropy term when every member's only term is a plain one:
    the class itself (not a subclass), the same stream and weight, no label smoothing, and
    nothing that expects its ``forward`` or its backward to run (its own or torch's global
    module hooks, a ``forward`` set on the instance). Else None."""
    hooks = ("forward_hooks", "forward_pre_hooks", "backward_hooks", "backward_pre_hooks")
    if any(getattr(torch_module, f"_global_{h}", None) for h in hooks):
        return None
    plain = []
    for own in terms:
        if len(own) != 1:
            return None
        (term,) = own.values()
        hooked = any(getattr(term, f"_{h}", None) for h in hooks) or "forward" in vars(term)
        if type(term) is not CrossEntropy or hooked or term.label_smoothing != 0.0:
            return None
        plain.append(term)
    first = plain[0]
    if any((t.stream, t.weight) != (first.stream, first.weight) for t in plain):
        return None
    return first


class _ModesFromTrain:
    """What Lightning's evaluation loop calls to save and restore the module's modes around a
    validation: nothing to save. Lightning restores only when the module does not override
    ``on_validation_model_train`` (``TransferModule`` does, by ``train()``); if it ever does,
    ``train()`` sets every mode again."""

    def capture(self, module: nn.Module) -> None:
        pass

    def restore(self, module: nn.Module) -> None:
        module.train()


def _writes_kept(trainer: L.Trainer) -> bool:
    """Whether ``trainer.callback_metrics`` and ``trainer.progress_bar_metrics`` return the
    trainer's own dicts (Lightning 2.6 does), so that what is written into them is seen later."""
    probe, kept = "graftlab/probe", True
    for prop in ("callback_metrics", "progress_bar_metrics"):
        getattr(trainer, prop)[probe] = 0.0
        kept = getattr(trainer, prop).pop(probe, None) is not None and kept
    return kept


class BestWeights(Callback):
    """Keeps an in-memory copy of every member's weights at its best epoch.

    Hand-written because ``ModelCheckpoint`` must write a file per improvement; for the many
    small target runs that cost more than an epoch of training. Stages that need a checkpoint
    file (pretrain) pass ``checkpoint_dir`` to :func:`pipeline.transfer.fit.fit` and get
    ``ModelCheckpoint``.

    Args:
        monitors: Per member, the metric whose best epoch is kept: ``val/acc`` (its own), another
            logged ``val/<name>`` (a callback's, single network), or None for the last epoch.
    """

    def __init__(self, monitors: list[str | None]) -> None:
        self.monitors = monitors
        self.best = [-math.inf] * len(monitors)
        self.state: list[dict | None] = [None] * len(monitors)

    def on_validation_end(self, trainer: L.Trainer, module: TransferModule) -> None:
        for i, (metrics, monitor) in enumerate(
            zip(module.member_metrics, self.monitors, strict=True)
        ):
            if monitor is None:  # fixed-length training keeps the last epoch
                value = math.inf
            elif monitor in metrics:
                value = metrics[monitor]
            else:
                value = float(trainer.callback_metrics[monitor])
            if value > self.best[i] or monitor is None:
                self.best[i] = value
                state = module.members[i].state_dict()
                self.state[i] = {k: v.detach().clone() for k, v in state.items()}


class EpochHistory(Callback):
    """Collects every member's epoch metrics and its share of the elapsed wall time."""

    def __init__(self, members: int) -> None:
        self.rows: list[list[dict]] = [[] for _ in range(members)]
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: TransferModule) -> None:
        seconds = (time.perf_counter() - self.t0) / len(self.rows)
        for rows, metrics in zip(self.rows, module.member_metrics, strict=True):
            row = {"epoch": trainer.current_epoch, "seconds": seconds, **metrics}
            # scores that callbacks logged for a single network (validators: val/im, ...)
            row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k not in row})
            rows.append(row)
