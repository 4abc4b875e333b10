"""Train arms for their seeds: pick the labelled subsets, initialise from the source, fit.

Shared by the tune, transfer and evaluate stages (trials, arms and curve points are all this);
:func:`train_arms` trains the arms that can share a loop as one vectorised ensemble.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.data.domain import Domain, Split
from pipeline.data.splits import label_budget
from pipeline.errors import ConfigError, DataError
from pipeline.transfer.arms import Arm, ModelFactory, init_model
from pipeline.transfer.fit import FitResult, Member, Tensors, ensemble_key, fit_ensemble
from pipeline.transfer.prefix_cache import PrefixCache
from pipeline.transfer.source import SourceModel
from pipeline.transfer.widen import random_layers

log = logging.getLogger(__name__)


def tensors(split: Split) -> Tensors:
    """A split as (x, y) tensors sharing its memory (y None when unlabelled)."""
    return torch.from_numpy(split.x), None if split.y is None else torch.from_numpy(split.y)


@dataclass(frozen=True)
class TargetTask:
    """What the arms train on: the target domain under a label budget, plus optional source data.

    The budget counts every labelled target image a run sees: seed s draws ``labels_per_class``
    training images per class from the train split and ``val_per_class`` validation images per
    class (for early stopping and tuning) from the val split, both seeded by s, so paired arms see
    the same images.

    Attributes:
        target: The target domain (train, val, test splits).
        labels_per_class: Labelled training images per class each seed draws; 0 for none
            (the transductive setting, where the target's labels are hidden).
        val_per_class: Labelled validation images per class each seed draws; None uses the whole
            val split (an unrealistically large validation set for a few-label problem).
        source_data: The labelled source domain, for objectives that read the ``source`` stream
            (same classes, in the same order, as the target).
    """

    target: Domain
    labels_per_class: int
    val_per_class: int | None = None
    source_data: Domain | None = None
    _subsets: dict = field(default_factory=dict, compare=False, repr=False)

    def _index(self, split: str, per_class: int | None, seed: int, key: str) -> np.ndarray:
        if (split, seed) not in self._subsets:
            y = self.target.splits[split].y
            index = (
                np.arange(len(y)) if per_class is None else label_budget(y, per_class, seed, key)
            )
            self._subsets[split, seed] = index
        return self._subsets[split, seed]

    def __post_init__(self) -> None:
        src = self.source_data
        if src is not None and tuple(src.classes) != tuple(self.target.classes):
            raise DataError(
                f"data.source ({src.name})",
                f"classes {list(src.classes)} differ from the target's "
                f"{list(self.target.classes)} ({self.target.name}); adapting a classifier to "
                "a new domain needs the same classes in the same order",
            )

    def available(self) -> tuple[str, ...]:
        """The training streams this task can offer (see :data:`pipeline.objectives.STREAMS`)."""
        train = self.target.splits["train"]
        out = []
        if self.labels_per_class > 0 and train.labelled:
            out.append("target")
        if self.source_data is not None:
            out.append("source")
        if len(train) > 0:
            out.append("unlabelled")
        return tuple(out)

    def check(self, arm: Arm, key: str = "transfer.arms") -> None:
        """Every stream ``arm``'s objectives read is offered here: a named error before any
        training otherwise (e.g. a domain-adaptation arm without unlabelled target data)."""
        offered = self.available()
        what = {
            "target": "labelled target data (data.labels_per_class > 0 and target labels)",
            "source": "labelled source data (the transductive setting: -S setting=transductive)",
            "unlabelled": "unlabelled target data (a non-empty target train split)",
        }
        for name, term in arm.objectives().items():
            for stream in term.reads:
                if stream not in offered:
                    raise ConfigError(
                        f"{key}.{arm.name}.objectives.{name}",
                        type(term).__name__,
                        f"a run with {what.get(stream, stream)}: it reads the '{stream}' stream "
                        f"and this run offers {list(offered)}",
                    )

    def check_budget(self, seed: int) -> None:
        """Seed ``seed``'s labelled and validation subsets can be drawn (raises
        :class:`ConfigError` naming ``data.labels_per_class`` / ``data.val_per_class``): what a
        stage checks before any run starts."""
        self.labelled_index(seed)
        self.validation_index(seed)

    def monitored(self, seed: int) -> Tensors:
        """The labelled split that ``val/acc`` is measured on: seed ``seed``'s target validation
        budget, or the source's validation split when the target's labels are hidden."""
        if self.target.splits["val"].labelled or self.source_data is None:
            return tensors(self.validation(seed))
        return tensors(self.source_data.splits["val"])

    def labelled_index(self, seed: int) -> np.ndarray:
        """Rows of the target train split in seed ``seed``'s labelled subset (computed once)."""
        return self._index("train", self.labels_per_class, seed, "data.labels_per_class")

    def labelled(self, seed: int) -> Split:
        """Seed ``seed``'s labelled target training subset."""
        return self.target.splits["train"].subset(self.labelled_index(seed))

    def validation_index(self, seed: int) -> np.ndarray:
        """Rows of the target val split in seed ``seed``'s validation subset (computed once)."""
        return self._index("val", self.val_per_class, seed, "data.val_per_class")

    def validation(self, seed: int) -> Split:
        """Seed ``seed``'s labelled validation subset."""
        return self.target.splits["val"].subset(self.validation_index(seed))

    def budget(self, seed: int) -> Split:
        """Every labelled target image seed ``seed`` may use (training and validation)."""
        train, val = self.labelled(seed), self.validation(seed)
        return Split(np.concatenate([train.x, val.x]), np.concatenate([train.y, val.y]))

    def streams(self, seed: int) -> dict[str, Tensors]:
        """Every training stream this task can offer an objective."""
        offered = self.available()
        out = {}
        if "target" in offered:
            out["target"] = tensors(self.labelled(seed))
        if "unlabelled" in offered:
            out["unlabelled"] = tensors(self.target.splits["train"].unlabelled())
        if "source" in offered:
            out["source"] = tensors(self.source_data.splits["train"])
        return out

    def with_labels(self, labels_per_class: int) -> TargetTask:
        """The same task under another training budget (the same validation budget)."""
        return TargetTask(self.target, labels_per_class, self.val_per_class, self.source_data)

    def with_validation(self, val_per_class: int | None) -> TargetTask:
        """The same task under another validation budget (None: the whole val split)."""
        return TargetTask(self.target, self.labels_per_class, val_per_class, self.source_data)

    @property
    def headline(self) -> str:
        """The budget in words, e.g. ``1 train + 3 val labels per class``."""
        val = "all val" if self.val_per_class is None else f"{self.val_per_class} val"
        return f"{self.labels_per_class} train + {val} labels per class"


def train_arm(
    arm: Arm,
    task: TargetTask,
    factory: ModelFactory,
    source: SourceModel,
    *,
    trainer_kwargs: dict | None = None,
    cache: PrefixCache | None = None,
    logger: object = False,
    callbacks: Sequence = (),
    prefix_caching: bool = True,
) -> FitResult:
    """Initialise ``arm``'s model for its seed and train it on the seed's labelled subset:
    :func:`train_arms` for one arm (the same arguments; ``logger`` and ``callbacks`` are its
    fit's)."""
    return train_arms(
        [arm],
        task,
        factory,
        source,
        trainer_kwargs=trainer_kwargs,
        cache=cache,
        logger=logger,
        callbacks=callbacks,
        prefix_caching=prefix_caching,
    )[0]


def train_arms(
    arms: Sequence[Arm],
    task: TargetTask,
    factory: ModelFactory,
    source: SourceModel,
    *,
    trainer_kwargs: dict | None = None,
    cache: PrefixCache | None = None,
    loggers: Sequence[object] | None = None,
    logger: object = False,
    callbacks: Sequence = (),
    prefix_caching: bool = True,
    vectorise: bool = True,
) -> list[FitResult]:
    """Train every arm for its seed, arms that can share one training loop as one ensemble.

    The result equals ``[train_arm(a, ...) for a in arms]`` within float tolerance (each member
    has its own init, labelled subsets, batch order, BatchNorm statistics and best epoch; see
    :func:`pipeline.transfer.fit.fit_ensemble`), at a fraction of the cost when arms group: the
    paired seeds of one arm, the seeds of one trial, the fine-tuned points of a freeze-depth
    curve. Arms group when they agree on everything but seed, init, learning rates and weight
    decay. Objectives reading several streams (labelled source, unlabelled target) train in
    ensembles too, each member on its own batches of every stream, with ``steps_per_epoch`` as
    alone. An arm trains alone, one fit per seed (logged with the reason), when an objective
    cannot be vectorised (``Objective.unvectorised``), its model or an objective has layers that
    draw random numbers (dropout: members would share one generator), or a validator callback
    chooses its epoch (``settings.monitor`` other than ``val/acc`` or None).

    Args:
        arms: The arms (their settings carry the seeds).
        task: Target data and label budget.
        factory: ``num_classes -> GroupedNet`` for the backbone.
        source: The source model (its first ``arm.init_groups`` groups are copied).
        trainer_kwargs: ``lightning.pytorch.Trainer`` arguments.
        cache: Frozen-prefix cache shared across runs.
        loggers: One Lightning logger (or False) per arm, receiving that arm's epoch metrics.
        logger: A Lightning logger for the first training loop (its first member's metrics).
        callbacks: Extra Lightning callbacks for the first training loop: as when looping over
            seeds, they see the first arm's ``val/acc`` (the first seed's fit reports to a
            pruner), with or without ensembles.
        prefix_caching: False always runs the whole network.
        vectorise: False trains every arm alone (for checks and benchmarks).
    """
    loggers = list(loggers) if loggers is not None else [False] * len(arms)
    members = [
        _member(arm, task, factory, source, lg) for arm, lg in zip(arms, loggers, strict=True)
    ]
    groups: dict[object, list[int]] = {}
    for i, (arm, member) in enumerate(zip(arms, members, strict=True)):
        alone = not vectorise or len(arms) == 1 or bool(_alone(arm, member))
        groups.setdefault(("alone", i) if alone else ensemble_key(member), []).append(i)
    results: list[FitResult | None] = [None] * len(arms)
    for n, index in enumerate(groups.values()):
        fitted = fit_ensemble(
            [members[i] for i in index],
            trainer_kwargs=trainer_kwargs,
            logger=logger if n == 0 else False,
            callbacks=callbacks if n == 0 else (),
            cache=cache,
            prefix_caching=prefix_caching,
        )
        for i, result in zip(index, fitted, strict=True):
            results[i] = result
    return results


def _member(
    arm: Arm, task: TargetTask, factory: ModelFactory, source: SourceModel, logger: object
) -> Member:
    seed, k = arm.settings.seed, arm.settings.freeze_groups
    model = init_model(
        factory,
        task.target.num_classes,
        seed=seed,
        source_state=source.state if arm.uses_source else None,
        init_groups=arm.init_groups,
        source_path=source.path,
    )
    # The frozen prefix is the source's when every frozen group was copied from it (then all
    # seeds share it), else it depends on the seed's random init.
    weights = source.weights_id if k <= arm.init_groups else f"init{arm.init_groups}|seed{seed}"
    data = {
        "target": f"target|n{task.labels_per_class}|seed{seed}",
        "val": "val" if task.val_per_class is None else f"val|v{task.val_per_class}|seed{seed}",
    }
    streams = task.streams(seed)
    keys = {n: (weights, data.get(n, n)) for n in [*streams, "val"]}
    objectives = arm.objectives()
    rng = torch.random.get_rng_state()  # what its objectives' setup would draw from, alone
    return Member(model, streams, arm.settings, objectives, logger, keys, task.monitored(seed), rng)


def _alone(arm: Arm, member: Member) -> str:
    """Why ``arm`` cannot join an ensemble (logged), or ""."""
    why = ""
    for name, objective in (member.objectives or {}).items():
        if reason := getattr(objective, "unvectorised", ""):
            why = f"objective {name} ({type(objective).__name__}) {reason}"
            break
    if not why and (drops := random_layers(member.model)):
        why = f"layer {drops[0]} draws random numbers in training"
    if not why and (drops := _objective_random_layers(arm, member)):
        why = f"objective layer {drops[0]} draws random numbers in training"
    if not why and arm.settings.monitor not in ("val/acc", None):
        why = f"its epoch is chosen by {arm.settings.monitor}, which a callback scores per network"
    if why:
        log.info("arm %s, seed %d trains alone: %s", arm.name, arm.settings.seed, why)
    return why


def _objective_random_layers(arm: Arm, member: Member) -> list[str]:
    """Layers of ``arm``'s objectives that draw random numbers in training (say, dropout in a
    domain discriminator), found on a throwaway set of them: objectives build their modules in
    ``setup``, so the member's own are still empty here. The generator is left as it was."""
    with torch.random.fork_rng(devices=[]):
        probe = arm.objectives()
        for term in probe.values():
            term.setup(member.model)
    return [f"{name}.{layer}" for name, term in probe.items() for layer in random_layers(term)]


class TrainedAccuracy:
    """``(arms, labels_per_class) -> accuracies`` on a target split of freshly trained arms (what
    the curves plot), sharing one frozen-prefix cache across every point; the arms of one call
    train as ensembles where they can (:func:`train_arms`).

    Results are memoised by what determines the trained model (:meth:`Arm.fingerprint`), so a
    curve point that is the same model as an arm already trained (say AnB+ at k = G and
    ``finetune``) is trained once; :meth:`remember` records those.

    Args:
        task: Target data (its training budget is replaced by each call's).
        factory: ``num_classes -> GroupedNet``.
        source: The source model.
        split: The target split scored.
        trainer_kwargs: ``lightning.pytorch.Trainer`` arguments.
        vectorise: False trains every arm alone.
    """

    def __init__(
        self,
        task: TargetTask,
        factory: ModelFactory,
        source: SourceModel,
        split: str = "test",
        trainer_kwargs: dict | None = None,
        vectorise: bool = True,
    ) -> None:
        self.task, self.factory, self.source, self.vectorise = task, factory, source, vectorise
        self.x, self.y = tensors(task.target.splits[split])
        self.trainer_kwargs, self.cache = trainer_kwargs, PrefixCache()
        self.groups = factory(2).num_groups
        self._tasks: dict[int, TargetTask] = {}
        self._memo: dict[tuple[str, int], float] = {}
        self.trained = 0

    def remember(self, arm: Arm, labels_per_class: int, accuracy: float) -> None:
        """Record ``arm``'s accuracy at a budget (e.g. scored by the evaluate stage)."""
        self._memo[arm.fingerprint(self.groups), labels_per_class] = accuracy

    def __call__(self, arms: Sequence[Arm], labels_per_class: int) -> list[float]:
        from pipeline.metrics.classification import accuracy
        from pipeline.models.predict import predict_logits

        keys = [(arm.fingerprint(self.groups), labels_per_class) for arm in arms]
        todo: dict[tuple[str, int], Arm] = {}
        for key, arm in zip(keys, arms, strict=True):
            if key not in self._memo:
                todo.setdefault(key, arm)
        if todo:
            if labels_per_class not in self._tasks:
                self._tasks[labels_per_class] = self.task.with_labels(labels_per_class)
            results = train_arms(
                list(todo.values()),
                self._tasks[labels_per_class],
                self.factory,
                self.source,
                trainer_kwargs=self.trainer_kwargs,
                cache=self.cache,
                vectorise=self.vectorise,
            )
            for key, result in zip(todo, results, strict=True):
                logits = predict_logits(result.model, self.x)
                self._memo[key] = accuracy(logits, self.y, self.task.target.num_classes)
                self.trained += 1
        return [self._memo[key] for key in keys]
