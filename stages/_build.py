"""Config sections -> pipeline objects: the one place that knows params.yaml and pipeline/."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from pipeline.data.domain import Domain
from pipeline.errors import ConfigError, GraftlabError
from pipeline.objectives import Objective
from pipeline.progress import interactive
from pipeline.transfer.arms import Arm, ModelFactory
from pipeline.transfer.freezing import resolve_depth
from pipeline.transfer.settings import FitSettings
from pipeline.transfer.train import TargetTask

_FACTORIES = ("optimizer", "scheduler", "augment")
SHARED_KEYS = set(FitSettings.__dataclass_fields__) - {"seed", "section"}
ARM_KEYS = {"init_groups", "objectives", *SHARED_KEYS}


def instantiate(cfg: DictConfig | dict, key: str, node: object = None, **kwargs: object) -> object:
    """``hydra.utils.instantiate`` of ``cfg.<key>`` (or of ``node``), errors naming the key."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    node = OmegaConf.select(cfg, key) if node is None else node
    if not isinstance(node, dict | DictConfig) or "_target_" not in node:
        raise ConfigError(
            key,
            node,
            "a config with a _target_ (pick an option of conf/" + key.replace(".", "/") + ")",
        )
    try:
        return hydra_instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, GraftlabError):  # e.g. a loader's DataError naming its file
            raise cause from None
        if isinstance(cause, ValueError | TypeError):
            allowed = f"valid settings for {node['_target_']} ({cause})"
            raise ConfigError(key, dict(node), allowed) from err
        allowed = f"an importable callable ({err})"
        raise ConfigError(f"{key}._target_", node["_target_"], allowed) from err


def build_domain(cfg: DictConfig, which: str) -> Domain:
    """The source or target dataset described by ``data.<which>``."""
    return instantiate(cfg, f"data.{which}", seed=cfg.seed)


def model_factory(cfg: DictConfig, pretrained: bool = False) -> ModelFactory:
    """``num_classes -> GroupedNet`` for the configured backbone.

    ``model.weights`` (a pretrained file) only initialise the source model (``pretrained``):
    every target arm starts from the source model's groups or, like ``scratch``, from a seeded
    random init, never from the file (whose folder's config still sets the architecture).
    """
    skip = {} if pretrained or "weights" not in cfg.model else {"load_weights": False}
    factory = partial(instantiate, cfg, "model", **skip)
    return lambda num_classes: factory(num_classes=num_classes)


def num_groups(factory: ModelFactory) -> int:
    return factory(2).num_groups


def trainer_kwargs(cfg: DictConfig, progress_bar: bool | None = None) -> dict:
    """``lightning.pytorch.Trainer`` arguments from ``trainer`` (minus our own keys)."""
    kw = OmegaConf.to_container(cfg.trainer, resolve=True)
    kw.pop("threads", None)
    kw.pop("ensembles", None)
    if progress_bar is not None:
        kw["enable_progress_bar"] = progress_bar
    elif kw.get("enable_progress_bar") is None:  # null: bars only on a terminal, not in logs
        kw["enable_progress_bar"] = interactive()
    return kw


def ensembles(cfg: DictConfig) -> bool:
    """``trainer.ensembles``: train runs that can share a loop as one vectorised ensemble."""
    value = cfg.trainer.get("ensembles", True)
    if not isinstance(value, bool):
        raise ConfigError("trainer.ensembles", value, "true or false")
    return value


def _factories(spec: dict, section: str) -> dict:
    """Optimiser, scheduler and augmentation factories from their ``_target_`` configs."""
    return {
        k: None if spec[k] is None else instantiate({}, f"{section}.{k}", spec[k])
        for k in _FACTORIES
        if k in spec
    }


def pretrain_settings(cfg: DictConfig) -> FitSettings:
    p = OmegaConf.to_container(cfg.pretrain, resolve=True)
    return FitSettings(
        epochs=p["epochs"],
        batch_size=p["batch_size"],
        head_lr=p["lr"],
        backbone_lr=p["lr"],
        weight_decay=p["weight_decay"],
        seed=cfg.seed,
        section="pretrain",
        **_factories(p, "pretrain"),
    )


def objectives_factory(specs: dict, key: str) -> Callable[[], dict[str, Objective]]:
    """Makes fresh loss terms from ``{name: {_target_: ...}}``; each is built once here to
    check it (so a bad term fails before any training)."""
    if not specs:
        raise ConfigError(key, specs, "at least one objective ({name: {_target_: ...}})")

    def make() -> dict[str, Objective]:
        built = {n: instantiate({}, f"{key}.{n}", s) for n, s in specs.items()}
        for name, term in built.items():
            if not isinstance(term, Objective):
                raise ConfigError(f"{key}.{name}._target_", specs[name]["_target_"], "an Objective")
        return built

    make()
    return make


def arm(cfg: DictConfig, name: str, groups: int, seed: int) -> Arm:
    """Arm ``name``: ``transfer`` shared settings overridden by ``transfer.arms.<name>``."""
    arms = cfg.transfer.arms
    if name not in arms:
        raise ConfigError("transfer.run", name, list(arms))
    spec = OmegaConf.to_container(arms[name], resolve=True)
    unknown = sorted(set(spec) - ARM_KEYS)
    if unknown:
        raise ConfigError(f"transfer.arms.{name}.{unknown[0]}", spec[unknown[0]], sorted(ARM_KEYS))
    shared = OmegaConf.to_container(cfg.transfer, resolve=True)
    merged = {k: v for k, v in shared.items() if k in SHARED_KEYS | {"objectives"}}
    merged |= {k: v for k, v in spec.items() if v is not None}
    section = f"transfer.arms.{name}" if set(spec) & {"head_lr", "backbone_lr"} else "transfer"
    init_groups = resolve_depth(
        merged.pop("init_groups", "all"), groups, f"transfer.arms.{name}.init_groups"
    )
    where = "transfer" if "freeze_groups" not in spec else f"transfer.arms.{name}"
    merged["freeze_groups"] = resolve_depth(
        merged["freeze_groups"], groups, f"{where}.freeze_groups"
    )
    where = "transfer" if "objectives" not in spec else f"transfer.arms.{name}"
    recipe = dict(merged)
    make = objectives_factory(merged.pop("objectives"), f"{where}.objectives")
    merged |= _factories(merged, section)
    try:
        settings = FitSettings(**merged, seed=seed, section=section)
    except ConfigError as err:  # name the key the bad value came from
        field = err.key.rpartition(".")[2]
        where = f"transfer.arms.{name}" if field in spec else "transfer"
        raise ConfigError(f"{where}.{field}", err.value, err.allowed) from None
    return Arm(name, init_groups, settings, make, recipe)


def trial_arm(cfg: DictConfig, groups: int) -> Callable[[dict, int], Arm]:
    """The primary arm for the config with a trial's ``{key: value}`` applied, for a seed,
    trained for ``tune.epochs`` (or the trial's ``transfer.epochs`` when the space searches it)."""

    def arm_for(values: dict, seed: int) -> Arm:
        trial_cfg = cfg.copy()
        for key, value in values.items():
            OmegaConf.update(trial_cfg, key, value)
        built = arm(trial_cfg, cfg.transfer.primary, groups, seed)
        epochs = int(values.get("transfer.epochs", cfg.tune.epochs))
        settings = dataclasses.replace(built.settings, epochs=epochs)
        return dataclasses.replace(built, settings=settings)

    return arm_for


def arm_names(cfg: DictConfig) -> list[str]:
    """Arms to run (``transfer.run``), checked against the defined arms, primary and baseline."""
    names = list(cfg.transfer.run)
    defined = list(cfg.transfer.arms)
    for name in names:
        if name not in defined:
            raise ConfigError("transfer.run", name, defined)
    for key in ("primary", "baseline"):
        if cfg.transfer[key] not in names:
            raise ConfigError(f"transfer.{key}", cfg.transfer[key], names)
    seeds = cfg.transfer.seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError("transfer.seeds", seeds, "an integer >= 1")
    return names


def target_task(cfg: DictConfig, target: Domain, source_data: Domain | None = None) -> TargetTask:
    """The target under the configured label budget (``data.labels_per_class`` train and
    ``data.val_per_class`` validation images per class, drawn per seed)."""
    val = cfg.data.get("val_per_class")
    return TargetTask(target, cfg.data.labels_per_class, val, source_data)


def transfer_seeds(cfg: DictConfig) -> list[int]:
    return [int(cfg.seed) + i for i in range(int(cfg.transfer.seeds))]


def tuned_config(cfg: DictConfig, best_path: Path) -> tuple[DictConfig, dict]:
    """``cfg`` with the tune stage's best overrides applied, and the best.yaml contents."""
    from stages._shell import apply_overrides

    if not best_path.is_file():
        return cfg, {}
    best = yaml.safe_load(best_path.read_text()) or {}
    overrides = [f"{k}={v}" for k, v in (best.get("overrides") or {}).items()]
    return apply_overrides(cfg, overrides), best
