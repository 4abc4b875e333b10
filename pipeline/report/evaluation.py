"""Fill an :class:`~pipeline.report.summary.Evaluation` with curves, scores and the
large-validation comparison; arms are built by the caller (``arm_for[name](seed)``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from pipeline.data.domain import Split
from pipeline.metrics.efficiency import labels_saved, scratch_equivalent
from pipeline.metrics.intervals import DIFFERENCE, Interval
from pipeline.metrics.source_scores import (
    compare_domain_scores,
    compare_label_scores,
    depth_ranking,
)
from pipeline.models.grouped import GroupedNet
from pipeline.models.weights import load_model
from pipeline.report.summary import Evaluation
from pipeline.transfer.arms import Arm, ModelFactory
from pipeline.transfer.curves import Accuracy, freeze_depth_curve, label_curve
from pipeline.transfer.source import SourceModel

ArmFor = dict[str, Callable[[int], Arm]]


log = logging.getLogger(__name__)


def add_curves(
    ev: Evaluation,
    arm_for: ArmFor,
    groups: int,
    accuracy: Accuracy,
    depth_seeds: Sequence[int],
    label_seeds: Sequence[int],
    budgets: Sequence[int],
    smallest_class: int,
) -> None:
    """The freeze-depth curve (``depth_seeds``; none when empty) with the primary arm's settings,
    and the label curve (``budgets``, capped at ``smallest_class``; none when empty) of primary vs
    baseline with the savings it implies per seed."""
    labels = ev.labels_per_class
    if depth_seeds:
        ev.freeze_depth = freeze_depth_curve(
            arm_for[ev.primary], groups, labels, list(depth_seeds), accuracy
        )
    if not budgets:
        return
    rows = label_curve(
        arm_for[ev.primary],
        arm_for[ev.baseline],
        budgets,
        smallest_class,
        list(label_seeds),
        accuracy,
    )
    ev.label_efficiency = rows
    ev.label_budgets_capped = tuple(sorted({int(b) for b in budgets if b > smallest_class}))
    if ev.label_budgets_capped:
        log.warning(
            "label curve: budgets %s exceed the smallest target class (%d training images): "
            "drawn at %d",
            list(ev.label_budgets_capped),
            smallest_class,
            smallest_class,
        )
    x = [r.labels_per_class for r in rows]
    per_seed = range(len(label_seeds))
    transfer = [[r.transfer[i] for r in rows] for i in per_seed]
    scratch = [[r.scratch[i] for r in rows] for i in per_seed]
    ev.labels_saved = labels_saved(x, transfer, scratch)
    reached = ev.arms[ev.primary].acc.values[: len(label_seeds)]
    ev.scratch_equivalent = scratch_equivalent(x, scratch, reached)


def add_scores(
    ev: Evaluation,
    factory: ModelFactory,
    source: SourceModel,
    budgets: dict[int, Split],
    target_images: Split,
    source_images: Split,
    max_samples: int,
    permutations: int,
    seed: int,
) -> None:
    """Label scores on each seed's budget and domain scores of the source model, each next to a
    random-init network of the same architecture (seeded like the arms); per-depth ranking
    against the freeze curve when there is one."""
    num_classes = source.spec["num_classes"]
    model = load_model(factory, source.path, num_classes)

    def reference(s: int) -> GroupedNet:
        torch.manual_seed(s)
        return factory(num_classes).eval()

    ev.scores = compare_label_scores(model, reference, budgets, ev.confidence)
    ev.domain = compare_domain_scores(
        model,
        reference(seed),
        target_images,
        source_images,
        max_samples=max_samples,
        permutations=permutations,
        seed=seed,
    )
    if ev.freeze_depth:
        # paired by seed: the curve's seeds are the first transfer seeds, as are budgets' keys
        realised = [r.freeze for r in ev.freeze_depth[1:]]
        paired = dict(list(budgets.items())[: len(realised[0])])
        ev.ranking = depth_ranking(model, reference, paired, realised, ev.confidence)


def add_large_validation(ev: Evaluation, arm_for: ArmFor, full: Accuracy) -> None:
    """Primary and baseline test accuracy when early stopping reads the whole validation split,
    minus the budget's, paired by seed (``full`` trains with the whole split)."""
    ev.large_validation = {}
    for name in (ev.primary, ev.baseline):
        stats = ev.arms[name]
        accs = full([arm_for[name](s) for s in stats.seeds], ev.labels_per_class)
        diffs = [f - a for f, a in zip(accs, stats.acc.values, strict=True)]
        ev.large_validation[name] = Interval.of(diffs, ev.confidence, DIFFERENCE)


def same_models(runs: Sequence[dict], arm: str) -> tuple[str, ...]:
    """Arms the transfer stage found to train the same model as ``arm`` (trained once)."""
    of = {r["arm"]: r.get("same_as") or r["arm"] for r in runs}
    root = of.get(arm, arm)
    return tuple(sorted({n for n, r in of.items() if r == root and n != arm}))
