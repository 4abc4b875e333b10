"""Target-side training shared by the tune, transfer and evaluate stages."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import yaml
from omegaconf import DictConfig

from pipeline.data.domain import Domain
from pipeline.data.splits import label_budget
from pipeline.models.weights import load_state_dict, state_digest
from pipeline.transfer.arms import Arm, init_model
from pipeline.transfer.fit import FitResult, fit
from pipeline.transfer.prefix_cache import PrefixCache
from stages import _build as build
from stages._shell import OUTPUTS, apply_overrides, read_json


class Source:
    """The pretrained source model as the transfer stages see it (weights, spec, MLflow ids)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "weights.safetensors"
        self.state = load_state_dict(self.path)
        self.spec = read_json(folder / "model.json")
        self.ids = read_json(folder / "mlflow.json")

    @cached_property
    def weights_id(self) -> str:
        """Content digest of the source weights (same weights, same id, on any machine)."""
        return state_digest(self.state)


def tuned_config(cfg: DictConfig, outputs: Path = OUTPUTS) -> tuple[DictConfig, dict]:
    """``cfg`` with the tune stage's best overrides applied, and the best.yaml contents."""
    best_path = outputs / "tune" / "best.yaml"
    if not best_path.is_file():
        return cfg, {}
    best = yaml.safe_load(best_path.read_text()) or {}
    overrides = [f"{k}={v}" for k, v in (best.get("overrides") or {}).items()]
    return apply_overrides(cfg, overrides), best


def to_tensors(domain: Domain, split: str, index: np.ndarray | None = None):
    s = domain.splits[split] if index is None else domain.splits[split].subset(index)
    return torch.from_numpy(s.x), torch.from_numpy(s.y)


def train_arm(
    cfg: DictConfig,
    arm: Arm,
    target: Domain,
    source: Source,
    labels_per_class: int,
    *,
    cache: PrefixCache,
    logger: object = False,
    callbacks: tuple = (),
    prefix_caching: bool = True,
) -> FitResult:
    """Initialise ``arm``'s model for its seed and train it on the seed's labelled subset."""
    seed = arm.settings.seed
    index = label_budget(target.splits["train"].y, labels_per_class, seed)
    model = init_model(
        build.model_factory(cfg),
        target.num_classes,
        seed=seed,
        source_state=source.state if arm.uses_source else None,
        init_groups=arm.init_groups,
        source_path=source.path,
    )
    key = f"{source.weights_id}|init{arm.init_groups}|seed{seed}|n{labels_per_class}"
    return fit(
        model,
        to_tensors(target, "train", index),
        to_tensors(target, "val"),
        arm.settings,
        trainer_kwargs=build.trainer_kwargs(cfg, progress_bar=False),
        logger=logger,
        callbacks=callbacks,
        cache=cache,
        cache_key=key,
        prefix_caching=prefix_caching,
    )
