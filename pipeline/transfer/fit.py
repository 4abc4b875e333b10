"""Train a grouped network on a sum of objectives with Lightning; return the best-epoch model.

One loop for every objective mix: the objectives declare the streams they read (labelled
target, labelled source, unlabelled target), the loop draws one on-device batch of each per step.
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from pipeline.data.streams import StepBatches, Stream, stream_seed
from pipeline.errors import ConfigError, TrainingError
from pipeline.models.grouped import GroupedNet
from pipeline.objectives import Objective
from pipeline.objectives.cross_entropy import CrossEntropy
from pipeline.transfer.module import TransferModule
from pipeline.transfer.prefix_cache import PrefixCache
from pipeline.transfer.settings import FitSettings

Tensors = tuple[torch.Tensor, torch.Tensor | None]


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes:
        model: The network with its best-epoch weights (highest ``settings.monitor``, or the last
            epoch when it is None), in eval mode.
        history: One dict per epoch: epoch, train/loss, train/acc, val/loss, val/acc, seconds
            and any other ``val/*`` metric a callback logged (unsupervised validators).
        best_epoch: Epoch (0-based) kept.
        best_val_acc: Validation accuracy at that epoch.
        seconds: Wall time of the whole fit.
        cached_prefix: Whether training ran on cached frozen-prefix activations.
    """

    model: GroupedNet
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_acc: float = float("nan")
    seconds: float = 0.0
    cached_prefix: bool = False


class BestWeights(Callback):
    """Keeps an in-memory copy of the weights of the epoch with the best validation accuracy.

    Hand-written because ``ModelCheckpoint`` must write a file per improvement; for the many
    small target runs that cost more than an epoch of training. Stages that need a checkpoint file
    (pretrain) pass ``checkpoint_dir`` to :func:`fit` and get ``ModelCheckpoint``.
    """

    def __init__(self, monitor: str | None = "val/acc") -> None:
        self.monitor, self.best, self.state = monitor, -math.inf, None

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        # monitor None: fixed-length training keeps the last epoch
        value = math.inf if self.monitor is None else float(trainer.callback_metrics[self.monitor])
        if value > self.best or self.monitor is None:
            self.best = value
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}


class EpochHistory(Callback):
    """Collects the epoch-level metrics and the elapsed wall time after every epoch."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch, "seconds": time.perf_counter() - self.t0}
        row.update(module.train_epoch_metrics())
        row.update(module.val_metrics)
        # scores that callbacks logged (unsupervised validators: val/im, val/snd, ...)
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k not in row})
        self.rows.append(row)


def device_of(accelerator: str) -> torch.device:
    """The torch device Lightning will use for ``accelerator`` (single device)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def fit(
    model: GroupedNet,
    train: Tensors | Mapping[str, Tensors],
    val: Tensors,
    settings: FitSettings,
    *,
    objectives: Mapping[str, Objective] | None = None,
    trainer_kwargs: dict | None = None,
    logger: object = False,
    callbacks: Sequence[Callback] = (),
    cache: PrefixCache | None = None,
    cache_key: str | None = None,
    prefix_caching: bool = True,
    checkpoint_dir: Path | None = None,
) -> FitResult:
    """Train ``model`` on the sum of ``objectives``, validate every epoch on ``val``, keep the
    best epoch.

    With frozen groups and no augmentation the frozen prefix of every stream is computed once
    (memoised in ``cache`` under ``cache_key``, an id of the weights in the frozen groups) and only
    the rest of the network is trained; the result is the same as training the whole network.

    Args:
        model: Network to train in place (already initialised).
        train: The training streams by name (``target``, ``source``, ``unlabelled``), each (x, y)
            with y None when unlabelled; a single (x, y) is the labelled ``target`` stream.
        val: (x, y) validation tensors.
        settings: Optimisation settings.
        objectives: Loss terms by name (fresh instances: they are set up for ``model``); default
            cross-entropy on ``target``.
        trainer_kwargs: Extra ``lightning.pytorch.Trainer`` arguments (accelerator, precision...).
        logger: A Lightning logger (e.g. ``MLFlowLogger``) or False.
        callbacks: Extra callbacks (e.g. an Optuna pruning callback).
        cache: Prefix cache; None computes the prefix for this fit only.
        cache_key: Identifies the frozen weights in ``cache``; None disables memoisation.
        prefix_caching: False always runs the whole network (for benchmarks and checks).
        checkpoint_dir: Write the best epoch's Lightning checkpoint (``best.ckpt``) there;
            otherwise the best weights are kept in memory.

    Raises:
        ConfigError: An objective reads a stream that was not given, or needs labels it lacks.
    """
    streams = dict(train) if isinstance(train, Mapping) else {"target": train}
    objectives = dict(objectives or {"ce": CrossEntropy()})
    driver = _check_streams(objectives, streams)
    kwargs = {"accelerator": "cpu", "devices": 1, **(trainer_kwargs or {})}
    device = device_of(kwargs["accelerator"])
    model.to(device)
    k = settings.freeze_groups
    use_cache = prefix_caching and k > 0 and settings.augment is None
    cache = cache or PrefixCache()
    read = {name for o in objectives.values() for name in o.reads}
    streams = {n: _to(t, device) for n, t in streams.items() if n in read}
    xv, yv = _to(val, device)
    if use_cache:
        key = (lambda split: (cache_key, split)) if cache_key else (lambda split: None)
        streams = {n: (cache.get(model, x, k, key(n)), y) for n, (x, y) in streams.items()}
        xv = cache.get(model, xv, k, key("val"))
    for objective in objectives.values():
        objective.setup(model)
    module = TransferModule(model, objectives, settings, start=k if use_cache else 0, driver=driver)
    train_batches = StepBatches(
        {
            n: Stream(
                x,
                y,
                settings.batch_size,
                shuffle=True,
                seed=settings.seed if n == driver else stream_seed(settings.seed, n),
                augment=settings.augment,
            )
            for n, (x, y) in streams.items()
        },
        driver,
    )
    val_batches = Stream(xv, yv, 1024)
    history = EpochHistory()
    with tempfile.TemporaryDirectory(prefix="graftlab-fit-") as tmp:
        if checkpoint_dir is not None:
            best = ModelCheckpoint(
                dirpath=checkpoint_dir,
                filename="best",
                monitor="val/acc",
                mode="max",
                save_weights_only=True,
            )
        else:
            best = BestWeights(settings.monitor)
        trainer = L.Trainer(
            max_epochs=settings.epochs,
            logger=logger,
            callbacks=[best, history, *callbacks],
            default_root_dir=tmp,
            num_sanity_val_steps=0,
            enable_model_summary=False,
            enable_checkpointing=checkpoint_dir is not None,
            log_every_n_steps=max(1, min(len(train_batches), settings.steps_per_epoch or 1 << 30)),
            limit_train_batches=settings.steps_per_epoch or 1.0,
            **kwargs,
        )
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # frozen groups are in eval mode on purpose (frozen BatchNorm statistics)
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
            trainer.fit(module, train_batches, val_batches)
        seconds = time.perf_counter() - t0
    if isinstance(best, BestWeights):
        state = best.state
    elif best.best_model_path:
        state = torch.load(best.best_model_path, map_location=device, weights_only=True)
        state = state["state_dict"]
    else:
        state = None
    if state is None:
        raise TrainingError("training finished without a single validated epoch")
    module.load_state_dict(state)
    model.eval()
    monitor, last = settings.monitor, len(history.rows) - 1
    best_epoch = (
        last if monitor is None else max(range(last + 1), key=lambda i: history.rows[i][monitor])
    )
    return FitResult(
        model=model,
        history=history.rows,
        best_epoch=best_epoch,
        best_val_acc=history.rows[best_epoch]["val/acc"],
        seconds=seconds,
        cached_prefix=use_cache,
    )


def _to(tensors: Tensors, device: torch.device) -> Tensors:
    x, y = tensors
    return x.to(device), None if y is None else y.to(device)


def _check_streams(objectives: Mapping[str, Objective], streams: Mapping[str, Tensors]) -> str:
    """Every stream an objective reads is given (labelled where it needs labels); return the
    labelled stream that defines an epoch (``target`` when read, else ``source``)."""
    for name, objective in objectives.items():
        for stream in objective.reads:
            if stream not in streams:
                raise ConfigError(
                    f"objectives.{name}",
                    type(objective).__name__,
                    f"training data for the '{stream}' stream it reads "
                    f"(this run has {sorted(streams)})",
                )
            if stream in objective.labels and streams[stream][1] is None:
                raise ConfigError(
                    f"objectives.{name}",
                    type(objective).__name__,
                    f"labels for the '{stream}' stream (it is unlabelled here)",
                )
    labelled = [o for obj in objectives.values() for o in obj.labels]
    for driver in ("target", "source", *labelled):
        if driver in labelled:
            return driver
    raise ConfigError(
        "objectives", sorted(objectives), "at least one objective that reads a labelled stream"
    )
