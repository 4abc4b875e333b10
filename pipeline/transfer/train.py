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

    Attributes:
        target: The target domain (train, val, test splits).
        labels_per_class: Labelled target training images per class each seed draws.
        source_data: The labelled source domain, for objectives that read the ``source`` stream.
    """

    target: Domain
    labels_per_class: int
    source_data: Domain | None = None
    _subsets: dict = field(default_factory=dict, compare=False, repr=False)

    def labelled_index(self, seed: int) -> np.ndarray:
        """Rows of the target train split in seed ``seed``'s labelled subset (computed once)."""
        if seed not in self._subsets:
            y = self.target.splits["train"].y
            self._subsets[seed] = label_budget(y, self.labels_per_class, seed)
        return self._subsets[seed]

    def labelled(self, seed: int) -> Split:
        """Seed ``seed``'s labelled target training subset."""
        return self.target.splits["train"].subset(self.labelled_index(seed))

    def streams(self, seed: int) -> dict[str, Tensors]:
        """Every training stream this task can offer an objective."""
        out = {
            "target": tensors(self.labelled(seed)),
            "unlabelled": tensors(self.target.splits["train"].unlabelled()),
        }
        if self.source_data is not None:
            out["source"] = tensors(self.source_data.splits["train"])
        return out

    def with_labels(self, labels_per_class: int) -> TargetTask:
        """The same task under another label budget."""
        return TargetTask(self.target, labels_per_class, self.source_data)


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
    """Initialise ``arm``'s model for its seed and train it on the seed's labelled subset.

    Args:
        arm: The arm (its settings carry the seed).
        task: Target data and label budget.
        factory: ``num_classes -> GroupedNet`` for the backbone.
        source: The source model (its first ``arm.init_groups`` groups are copied).
        trainer_kwargs: ``lightning.pytorch.Trainer`` arguments.
        cache: Frozen-prefix cache shared across runs.
        logger: A Lightning logger or False.
        callbacks: Extra Lightning callbacks.
        prefix_caching: False always runs the whole network.
    """
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
    has its own init, labelled subset, batch order, BatchNorm statistics and best epoch; see
    :func:`pipeline.transfer.fit.fit_ensemble`), at a fraction of the cost when arms group: the
    paired seeds of one arm, the seeds of one trial, the fine-tuned points of a freeze-depth
    curve. Arms group when they agree on everything but seed, init, learning rates and weight
    decay. An arm with an objective that cannot be vectorised (``Objective.unvectorised``) or a
    model with random layers trains alone (logged).

    Args:
        arms: The arms (their settings carry the seeds).
        task: Target data and label budget.
        factory: ``num_classes -> GroupedNet`` for the backbone.
        source: The source model (its first ``arm.init_groups`` groups are copied).
        trainer_kwargs: ``lightning.pytorch.Trainer`` arguments.
        cache: Frozen-prefix cache shared across runs.
        loggers: One Lightning logger (or False) per arm, receiving that arm's epoch metrics.
        logger: A Lightning logger for each training loop (the mean over its members) or False.
        callbacks: Extra Lightning callbacks, given to every training loop (so pass stateful
            ones, such as a pruning callback, only for arms that form one ensemble).
        prefix_caching: False always runs the whole network.
        vectorise: False trains every arm alone (for checks and benchmarks).
    """
    loggers = list(loggers) if loggers is not None else [False] * len(arms)
    members = [
        _member(arm, task, factory, source, lg) for arm, lg in zip(arms, loggers, strict=True)
    ]
    groups: dict[object, list[int]] = {}
    for i, (arm, member) in enumerate(zip(arms, members, strict=True)):
        alone = not vectorise or bool(_alone(arm, member))
        groups.setdefault(("alone", i) if alone else ensemble_key(member), []).append(i)
    results: list[FitResult | None] = [None] * len(arms)
    for index in groups.values():
        fitted = fit_ensemble(
            [members[i] for i in index],
            tensors(task.target.splits["val"]),
            trainer_kwargs=trainer_kwargs,
            logger=logger,
            callbacks=callbacks,
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
    # seeds share the validation prefix), else it depends on the seed's random init.
    weights = source.weights_id if k <= arm.init_groups else f"init{arm.init_groups}|seed{seed}"
    data = {"target": f"target|n{task.labels_per_class}|seed{seed}"}
    streams = task.streams(seed)
    keys = {n: (weights, data.get(n, n)) for n in [*streams, "val"]}
    return Member(model, streams, arm.settings, arm.objectives(), logger, keys)


def _alone(arm: Arm, member: Member) -> str:
    """Why ``arm`` cannot join an ensemble (logged), or ""."""
    for name, objective in (member.objectives or {}).items():
        if reason := getattr(objective, "unvectorised", ""):
            why = f"objective {name} ({type(objective).__name__}) {reason}"
            break
    else:
        drops = random_layers(member.model)
        why = f"layer {drops[0]} draws random numbers in training" if drops else ""
    if why:
        log.info("arm %s, seed %d trains alone: %s", arm.name, arm.settings.seed, why)
    return why


class TrainedAccuracy:
    """``(arms, labels_per_class) -> accuracies`` on a target split of freshly trained arms (what
    the curves plot), sharing one frozen-prefix cache across every point; the arms of one call
    train as ensembles where they can (:func:`train_arms`).

    Args:
        task: Target data (its label budget is replaced by each call's).
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
        self._tasks: dict[int, TargetTask] = {}

    def __call__(self, arms: Sequence[Arm], labels_per_class: int) -> list[float]:
        from pipeline.models.predict import predict_logits

        if labels_per_class not in self._tasks:
            self._tasks[labels_per_class] = self.task.with_labels(labels_per_class)
        results = train_arms(
            arms,
            self._tasks[labels_per_class],
            self.factory,
            self.source,
            trainer_kwargs=self.trainer_kwargs,
            cache=self.cache,
            vectorise=self.vectorise,
        )
        accuracies = []
        for result in results:
            logits = predict_logits(result.model, self.x)
            accuracies.append(float((logits.argmax(1) == self.y.to(logits.device)).float().mean()))
        return accuracies
