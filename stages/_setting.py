"""The transfer setting (``setting.name``): which data tune and transfer may read.

- ``inductive`` (default): the target's labelled subset (``data.labels_per_class``) trains,
  its labelled validation split chooses.
- ``transductive`` (``-S setting=transductive``): domain adaptation. The target is loaded with
  *every* label removed (:meth:`Domain.without_labels`), so no code path of tune or transfer can
  read one; labelled source data trains, the source validation split and unsupervised validators
  (``setting.validators``, computed every epoch) choose. Only evaluate reads target labels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.data.domain import SPLITS
from pipeline.data.store import load_domain
from pipeline.errors import ConfigError
from pipeline.selection import Validator
from pipeline.transfer.train import TargetTask, tensors
from stages._build import instantiate
from stages._build import target_task as build_task
from stages._files import Layout

SETTINGS = ("inductive", "transductive")


def name(cfg: DictConfig) -> str:
    value = OmegaConf.select(cfg, "setting.name", default="inductive")
    if value not in SETTINGS:
        raise ConfigError("setting.name", value, SETTINGS)
    return value


def transductive(cfg: DictConfig) -> bool:
    return name(cfg) == "transductive"


def target_task(cfg: DictConfig, paths: Layout) -> TargetTask:
    """The data tune and transfer train on: in the transductive setting the target without any
    label, plus the labelled source (their class lists must match); the validators are checked
    here too, so a bad one stops the stage before any training."""
    target = load_domain(paths.domain("target"))
    if not transductive(cfg):
        task = build_task(cfg, target)
        seed = int(cfg.seed)  # the label budget fits the data: checked before any training
        task.labelled_index(seed), task.validation_index(seed)
        return task
    validators(cfg, has_source=True)
    hidden = target.without_labels(*SPLITS)
    return TargetTask(hidden, 0, source_data=load_domain(paths.domain("source")))


def validators(cfg: DictConfig, has_source: bool) -> dict[str, Validator]:
    """``setting.validators`` built and checked (a source-reading one needs source data), and the
    chosen ``setting.validator`` and ``transfer.monitor`` among them."""
    from pipeline.selection.callback import check_validators  # loads Lightning: only when used

    specs = OmegaConf.to_container(cfg.setting.get("validators") or {}, resolve=True)
    built = {n: instantiate({}, f"setting.validators.{n}", s) for n, s in specs.items()}
    check_validators(built, has_source)
    chosen = cfg.setting.get("validator")
    if chosen not in built:
        raise ConfigError("setting.validator", chosen, sorted(built))
    allowed = [None, "val/acc", *(f"val/{n}" for n in built)]
    monitor = OmegaConf.select(cfg, "transfer.monitor", default="val/acc")
    if monitor not in allowed:
        raise ConfigError("transfer.monitor", monitor, allowed)
    return built


def epoch_scores(cfg: DictConfig, task: TargetTask) -> Callable[[], list]:
    """Per-run callbacks: none inductively; transductively a fresh :class:`ValidatorScores` on
    the target validation inputs (unlabelled), the source validation split and a seeded sample of
    the source training split, recording predictions on the target test inputs for evaluate."""
    if not transductive(cfg):
        return list
    from pipeline.selection.callback import ValidatorScores

    source = task.source_data
    built = validators(cfg, source is not None)
    target_val = tensors(task.target.splits["val"])[0]
    probe = tensors(task.target.splits["test"])[0]
    source_val = tensors(source.splits["val"]) if source is not None else None
    sample = None
    if source is not None:
        train = source.splits["train"]
        n = min(int(cfg.setting.source_train_sample), len(train))
        pick = np.random.default_rng(int(cfg.seed)).permutation(len(train))[:n]
        sample = torch.from_numpy(train.x[np.sort(pick)])
    return lambda: [ValidatorScores(built, target_val, source_val, sample, probe)]


def tune_monitor(cfg: DictConfig) -> str:
    """What a trial maximises: the chosen validator transductively, target val accuracy else."""
    return f"val/{cfg.setting.validator}" if transductive(cfg) else "val/acc"


def scored(cfg: DictConfig, task: TargetTask, train: Callable) -> Callable:
    """``train(arms, logger=..., callbacks=...)`` with the per-run callbacks of
    :func:`epoch_scores` added (none inductively)."""
    scores = epoch_scores(cfg, task)

    def run(arms, logger=False, callbacks=()):
        return train(arms, logger=logger, callbacks=(*scores(), *callbacks))

    return run


def arm_metrics(rows: list[dict], names: list[str]) -> dict:
    """Per arm, the mean best validation accuracy over its seeds, and (transductive) the mean
    validator score at the kept epochs."""
    metrics = {}
    for n in names:
        mine = [r for r in rows if r["arm"] == n]
        metrics[n] = {"val_acc": float(np.mean([r["best_val_acc"] for r in mine]))}
        if scores := [r["best_score"] for r in mine if r.get("best_score")]:
            metrics[n]["score"] = float(np.mean(scores))
    return metrics


def summary(cfg: DictConfig, metrics: dict, names: list[str]) -> str:
    """The transfer stage's console summary; transductively it says the accuracy is the
    source's (no target label has been read) and gives the validator's score."""
    accs = ", ".join(f"{n} {metrics[n]['val_acc']:.3f}" for n in names)
    if transductive(cfg):
        name = str(OmegaConf.select(cfg, "transfer.monitor")).removeprefix("val/")
        got = [n for n in names if "score" in metrics[n]]
        val = ", ".join(f"{n} {metrics[n]['score']:.3f}" for n in got)
        accs = f"source val acc {accs}" + (f"; val {name} {val}" if got else "")
    else:
        accs = f"val_acc {accs}"
    seeds = metrics["seeds"]
    return f"{accs} ({f'mean of {seeds} seeds' if seeds > 1 else '1 seed'})"
