"""Train a grouped network on a sum of objectives with Lightning; return the best-epoch model.

One loop for every objective mix: the objectives declare the streams they read (labelled
target, labelled source, unlabelled target), the loop draws one on-device batch of each per step.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from pipeline.data.streams import (
    StackedBatches,
    StepBatches,
    Stream,
    memory_key,
    stack_members,
    stream_seed,
)
from pipeline.errors import ConfigError, TrainingError
from pipeline.models.grouped import GroupedNet
from pipeline.models.predict import inference_batch
from pipeline.objectives import Objective
from pipeline.objectives.cross_entropy import CrossEntropy
from pipeline.processes import FIT_ROOT, owned_prefix
from pipeline.startup import freeze_startup_objects, keep_freed_memory
from pipeline.transfer.prefix_cache import PrefixCache, pool_is_fixed
from pipeline.transfer.settings import FitSettings
from pipeline.transfer.widen import WidenError, check_wide, link, unlink, widen

if TYPE_CHECKING:  # Lightning loads at the first fit: stages that do not train never pay for it
    from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

Tensors = tuple[torch.Tensor, torch.Tensor | None]
_UNWIDENED: set[str] = set()  # why networks could not be widened, as said in this process


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
        seconds: Wall time of the whole fit (an ensemble member's share of the ensemble's).
        cached_prefix: Whether training ran on cached frozen-prefix activations.
    """

    model: GroupedNet
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_acc: float = float("nan")
    seconds: float = 0.0
    cached_prefix: bool = False


def device_of(accelerator: str) -> torch.device:
    """The torch device Lightning will use for ``accelerator`` (single device)."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass
class Member:
    """One network of an ensemble fit and what only it sees.

    Attributes:
        model: The network to train in place (already initialised).
        train: Its training streams by name (``target``, ``source``, ``unlabelled``), each (x, y)
            with y None when unlabelled; a single (x, y) is the labelled ``target`` stream.
        settings: Its settings (its seed orders its batches).
        objectives: Its loss terms by name (fresh instances); default cross-entropy on target.
        logger: A Lightning logger receiving its per-epoch metrics, or False.
        cache_keys: Prefix-cache key per stream name and ``"val"``, each identifying the frozen
            weights and the data (equal keys share one computation); None: no memoisation.
        val: Its own (x, y) validation split (say, its seed's validation budget); None: the one
            :func:`fit_ensemble` is given.
        rng_state: torch's CPU generator state right after its model was initialised: restored
            before its objectives build their parameters (a discriminator's init), so they draw
            what they would draw alone. None: the generator as it is.
    """

    model: GroupedNet
    train: Tensors | Mapping[str, Tensors]
    settings: FitSettings
    objectives: Mapping[str, Objective] | None = None
    logger: object = False
    cache_keys: Mapping[str, Hashable] | None = None
    val: Tensors | None = None
    rng_state: torch.Tensor | None = field(default=None, repr=False)


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
    (memoised in ``cache`` under ``cache_key``, an id of the weights in the frozen groups; with
    every group frozen, the pooled features) and only the rest of the network is trained; the
    result is the same as training the whole network.

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
    keys = None if cache_key is None else {n: (cache_key, n) for n in [*streams, "val"]}
    member = Member(model, streams, settings, objectives, cache_keys=keys)
    return fit_ensemble(
        [member],
        val,
        trainer_kwargs=trainer_kwargs,
        logger=logger,
        callbacks=callbacks,
        cache=cache,
        prefix_caching=prefix_caching,
        checkpoint_dir=checkpoint_dir,
    )[0]


def fit_ensemble(
    members: Sequence[Member],
    val: Tensors | None = None,
    *,
    trainer_kwargs: dict | None = None,
    logger: object = False,
    callbacks: Sequence[Callback] = (),
    cache: PrefixCache | None = None,
    prefix_caching: bool = True,
    checkpoint_dir: Path | None = None,
    vectorise: bool = True,
) -> list[FitResult]:
    """Train several networks of one architecture together, each as :func:`fit` would alone.

    One Lightning Trainer and one loop for all members: every step draws each member's own
    batches (its data, its seed), runs all members at once as one wide network (grouped
    convolutions, :mod:`pipeline.transfer.widen`) and sums their losses, whose gradients are each
    member's own; one optimiser holds every member's parameter groups (per-member learning
    rates). Each member keeps its own BatchNorm statistics, objectives, best epoch and logger.
    A network that cannot be widened (see :class:`~pipeline.transfer.widen.WidenError`) runs
    member by member inside the same loop.

    Args:
        members: The networks and what each trains on; they must agree on the architecture, the
            stream and validation sizes, the objectives' kinds, and every setting but the seed
            and the learning rates and weight decay (see :func:`ensemble_key`).
        val: (x, y) validation tensors of the members that bring none of their own.
        trainer_kwargs: Extra ``lightning.pytorch.Trainer`` arguments (accelerator, precision...).
        logger: A Lightning logger for the whole fit (gets the first member's metrics, as the
            first of a loop over the members would) or False.
        callbacks: Extra callbacks; ``val/acc`` in ``trainer.callback_metrics`` is the first
            member's (what a pruner saw when the first seed reported), ``module.member_metrics``
            has each member's. Several members train together
            only when they keep the best ``val/acc`` or the last epoch (``settings.monitor``):
            validators that log their own metric score one network.
        cache: Prefix cache; None computes the prefixes for this fit only.
        prefix_caching: False always runs the whole network (for benchmarks and checks).
        checkpoint_dir: Write the best epoch's Lightning checkpoint (``best.ckpt``) there (one
            member only).
        vectorise: False runs the members one after another inside the loop (for checks).

    Returns:
        One :class:`FitResult` per member, in order; ``seconds`` are each member's share of the
        wall time.

    Raises:
        ConfigError: An objective reads a stream that was not given, or needs labels it lacks.
        ValueError: The members cannot share one loop (see ``members``).
    """
    import lightning.pytorch as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from pipeline.transfer.module import BestWeights, EpochHistory, TransferModule

    freeze_startup_objects()
    keep_freed_memory()
    if checkpoint_dir is not None and len(members) > 1:
        raise ValueError("checkpoint_dir is for a single network")
    keys = {ensemble_key(m) for m in members}
    if len(keys) > 1:
        raise ValueError(f"members cannot share one training loop: {sorted(map(str, keys))}")
    settings = members[0].settings
    streams = [
        dict(m.train) if isinstance(m.train, Mapping) else {"target": m.train} for m in members
    ]
    objectives = [dict(m.objectives or {"ce": CrossEntropy()}) for m in members]
    driver = _check_streams(objectives[0], streams[0])
    kwargs = {"accelerator": "cpu", "devices": 1, **(trainer_kwargs or {})}
    device = device_of(kwargs["accelerator"])
    # Channels-last layout: on the CPU, oneDNN's convolutions and pooling ran 1.3-1.9x faster
    # for inference and ~15% faster per training step on it for the 4-group CNN (max pooling of
    # NCHW activations alone took 7x longer), with the same results up to float rounding. The
    # wide network gets the layout from to_wide; this gives it to single networks too (only
    # 4-D parameters and buffers change; their values do not).
    models = [m.model.to(device, memory_format=torch.channels_last) for m in members]
    k = settings.freeze_groups
    use_cache = prefix_caching and k > 0 and settings.augment is None
    read = {name for o in objectives[0].values() for name in o.reads}
    moved: dict[tuple, torch.Tensor] = {}  # one device copy of what members share
    streams = [{n: _to(t, device, moved) for n, t in s.items() if n in read} for s in streams]
    vals = [_to(m.val if m.val is not None else val, device, moved) for m in members]
    xvs = [x for x, _ in vals]
    start = k if use_cache else 0
    if use_cache and k == models[0].num_groups and pool_is_fixed(models[0]):
        # every group frozen (a linear probe): cache the pooled features, not the last group's
        # maps, which every step re-laid out for the wide network and pooled again. A 10-member
        # probe trained 1.2-1.3x faster (bench_ensemble.py, k=4); same weights as before,
        # bitwise with cross-entropy, within float rounding with other objectives
        start = k + 1
    if use_cache:
        cache = cache or PrefixCache()
        for i, m in enumerate(members):
            key = (lambda n, m=m: None) if m.cache_keys is None else m.cache_keys.get
            streams[i] = {
                n: (cache.get(models[i], x, start, key(n)), y) for n, (x, y) in streams[i].items()
            }
            xvs[i] = cache.get(models[i], xvs[i], start, key("val"))
    for member, model, terms in zip(members, models, objectives, strict=True):
        if member.rng_state is not None:
            torch.random.set_rng_state(member.rng_state)
        for objective in terms.values():
            objective.setup(model)
    wide = _widen(models, vals[0][0][:4]) if vectorise and len(models) > 1 else None
    member_loggers = [m.logger for m in members]
    if len(members) == 1 and member_loggers[0] and not logger:
        # one network: its logger is the loop's, as in a plain fit, so what callbacks log
        # themselves (validators' val/im, ...) reaches its run too; Lightning finalizes it
        logger, member_loggers = member_loggers[0], [False]
    module = TransferModule(
        models,
        objectives,
        [m.settings for m in members],
        start=start,
        driver=driver,
        wide=wide,
        member_loggers=member_loggers,
    )
    train_batches = _train_batches(members, streams, driver)
    # a user's limit_val_batches counts Lightning batches: then they are the inference batches
    whole = kwargs.get("limit_val_batches") in (None, 1.0)
    val_batches = _val_batches(xvs, [y for _, y in vals], whole)
    history = EpochHistory(len(members))
    # Lightning's root folder of this fit, named by its owner so that the next stage run sweeps
    # it if this process is killed before it is removed (stages._lifecycle.guarded)
    with tempfile.TemporaryDirectory(prefix=owned_prefix(FIT_ROOT)) as tmp:
        if checkpoint_dir is not None:
            best = ModelCheckpoint(
                dirpath=checkpoint_dir,
                filename="best",
                monitor="val/acc",
                mode="max",
                save_weights_only=True,
            )
        else:
            best = BestWeights([m.settings.monitor for m in members])
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
        status = "failed"
        try:
            with warnings.catch_warnings():
                # frozen groups are in eval mode on purpose (frozen BatchNorm statistics)
                warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
                trainer.fit(module, train_batches, val_batches)
            status = "success"
        finally:
            if wide is not None:
                unlink(wide)
            for member_logger in member_loggers:
                if member_logger:
                    member_logger.finalize(status)
        seconds = (time.perf_counter() - t0) / len(members)
    if isinstance(best, BestWeights):
        states = best.state
    elif best.best_model_path:
        state = torch.load(best.best_model_path, map_location=device, weights_only=True)
        module.load_state_dict(state["state_dict"])
        states = [models[0].state_dict()]
    else:
        states = [None]
    return [
        _result(model, state, rows, seconds, use_cache, m.settings.monitor)
        for m, model, state, rows in zip(members, models, states, history.rows, strict=True)
    ]


def _train_batches(
    members: Sequence[Member], streams: list[dict[str, Tensors]], driver: str
) -> StackedBatches:
    """Every member's own seeded streams (its batch order: the same as alone), stacked."""
    per_member = []
    for member, own in zip(members, streams, strict=True):
        s = member.settings
        per_member.append(
            StepBatches(
                {
                    n: Stream(
                        x,
                        y,
                        s.batch_size,
                        shuffle=True,
                        seed=s.seed if n == driver else stream_seed(s.seed, n),
                        augment=s.augment,
                    )
                    for n, (x, y) in own.items()
                },
                driver,
            )
        )
    return StackedBatches(per_member)


def _val_batches(xvs: list[torch.Tensor], ys: list[torch.Tensor], whole: bool) -> Stream:
    """Validation inputs ``(N, S, ...)`` and labels ``(N, S)``: one split seen by every member
    (a view) or each member's own split (or prefix activations), stacked. ``whole``: as one
    batch (the module runs it in cache-sized chunks: see
    :meth:`TransferModule.validation_step`); else in batches of
    :func:`~pipeline.models.predict.inference_batch` images (each for every member)."""
    size = len(xvs[0]) if whole else inference_batch(xvs[0].device, len(xvs))
    return Stream(stack_members(xvs), stack_members(ys), max(1, size))


def _result(
    model: GroupedNet,
    state: dict | None,
    rows: list[dict],
    seconds: float,
    cached: bool,
    monitor: str | None,
) -> FitResult:
    """Load the kept epoch's weights into ``model`` and describe its fit."""
    if state is None:
        raise TrainingError("training finished without a single validated epoch")
    model.load_state_dict(state)
    model.eval()
    last = len(rows) - 1
    best_epoch = last if monitor is None else max(range(last + 1), key=lambda e: rows[e][monitor])
    return FitResult(
        model=model,
        history=rows,
        best_epoch=best_epoch,
        best_val_acc=rows[best_epoch]["val/acc"],
        seconds=seconds,
        cached_prefix=cached,
    )


# settings each member of an ensemble may set for itself (they become its optimiser groups)
PER_MEMBER = {"seed", "head_lr", "backbone_lr", "lr_decay", "weight_decay", "section"}


def ensemble_key(member: Member) -> tuple:
    """What members must share to train in one loop: architecture, stream and validation sizes,
    objectives (kinds and hyper-parameters) and every setting but seed, learning rates and
    weight decay."""
    streams = member.train if isinstance(member.train, Mapping) else {"target": member.train}
    shapes = tuple((k, tuple(v.shape)) for k, v in member.model.state_dict().items())
    terms = member.objectives or {"ce": CrossEntropy()}
    settings = member.settings.as_dict()
    return (
        type(member.model).__name__,
        hash(shapes),
        tuple(sorted((n, tuple(x.shape), y is None) for n, (x, y) in streams.items())),
        None if member.val is None else tuple(member.val[0].shape),
        tuple(sorted((n, signature(o)) for n, o in terms.items())),
        tuple(sorted((k, str(v)) for k, v in settings.items() if k not in PER_MEMBER)),
    )


def signature(objective: Objective) -> str:
    """An objective's kind and plain hyper-parameters (what an ensemble's members must share:
    each member has its own instance, but one loop calls them all the same way)."""
    plain = {
        k: v
        for k, v in sorted(vars(objective).items())
        if not k.startswith("_") and isinstance(v, int | float | str | bool | tuple | type(None))
    }
    return f"{type(objective).__module__}.{type(objective).__qualname__}{plain}"


def _widen(models: Sequence[GroupedNet], sample: torch.Tensor) -> GroupedNet | None:
    """The members as one wide network, checked on ``sample``; None (logged) when impossible."""
    wide = None
    try:
        wide = widen(models)
        link(wide)
        check_wide(wide, models, sample)
    except WidenError as err:
        if wide is not None:
            unlink(wide)
        # once per reason and process: a timm backbone gave the same line for every fit
        level = logging.DEBUG if str(err) in _UNWIDENED else logging.INFO
        _UNWIDENED.add(str(err))
        log.log(
            level,
            "ensembles: %s; their members run one after another in one loop (ensemble of %d)",
            err,
            len(models),
        )
        return None
    return wide


def _to(tensors: Tensors, device: torch.device, moved: dict[tuple, torch.Tensor]) -> Tensors:
    """``tensors`` on ``device``; tensors over the same memory (the members' copies of one
    source split, converted per seed) become one device tensor, memoised in ``moved``, so
    that members share it there too (see :func:`pipeline.data.streams.stack_members`)."""

    def one(t: torch.Tensor) -> torch.Tensor:
        if t.device == device:
            return t
        key = memory_key(t)
        if key not in moved:
            moved[key] = t.to(device)
        return moved[key]

    x, y = tensors
    return one(x), None if y is None else one(y)


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
