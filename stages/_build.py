"""Config sections -> pipeline objects: the one place that knows params.yaml and pipeline/."""

from __future__ import annotations

from functools import partial

from omegaconf import DictConfig, OmegaConf

from pipeline.data.domain import Domain
from pipeline.errors import ConfigError
from pipeline.transfer.arms import Arm, ModelFactory
from pipeline.transfer.freezing import resolve_depth
from pipeline.transfer.settings import FitSettings

ARM_KEYS = {"init_groups", *FitSettings.__dataclass_fields__} - {"seed", "section"}
SHARED_KEYS = set(FitSettings.__dataclass_fields__) - {"seed", "section"}


def instantiate(cfg: DictConfig, key: str, **kwargs: object) -> object:
    """``hydra.utils.instantiate`` of ``cfg.<key>`` with errors that name the key."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    node = OmegaConf.select(cfg, key)
    if node is None or "_target_" not in node:
        raise ConfigError(
            key,
            node,
            "a config with a _target_ (pick an option of conf/" + key.replace(".", "/") + ")",
        )
    try:
        return hydra_instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        allowed = "an importable callable"
        if isinstance(cause, TypeError):
            allowed = "a callable that accepts the settings under " + key
        raise ConfigError(f"{key}._target_", node._target_, f"{allowed} ({cause or err})") from err


def build_domain(cfg: DictConfig, which: str) -> Domain:
    """The source or target dataset described by ``data.<which>``."""
    return instantiate(cfg, f"data.{which}", image_size=cfg.data.image_size, seed=cfg.seed)


def model_factory(cfg: DictConfig) -> ModelFactory:
    """``num_classes -> GroupedNet`` for the configured backbone (checked once here)."""
    factory = partial(instantiate, cfg, "model")
    return lambda num_classes: factory(num_classes=num_classes)


def num_groups(factory: ModelFactory) -> int:
    return factory(2).num_groups


def trainer_kwargs(cfg: DictConfig, progress_bar: bool | None = None) -> dict:
    """``lightning.pytorch.Trainer`` arguments from ``trainer`` (minus our own keys)."""
    kw = OmegaConf.to_container(cfg.trainer, resolve=True)
    kw.pop("threads", None)
    if progress_bar is not None:
        kw["enable_progress_bar"] = progress_bar
    return kw


def pretrain_settings(cfg: DictConfig) -> FitSettings:
    p = cfg.pretrain
    return FitSettings(
        epochs=p.epochs,
        batch_size=p.batch_size,
        head_lr=p.lr,
        backbone_lr=p.lr,
        weight_decay=p.weight_decay,
        optimizer=p.optimizer,
        seed=cfg.seed,
        section="pretrain",
    )


def arm(cfg: DictConfig, name: str, groups: int, seed: int) -> Arm:
    """Arm ``name``: ``transfer`` shared settings overridden by ``transfer.arms.<name>``."""
    arms = cfg.transfer.arms
    if name not in arms:
        raise ConfigError("transfer.run", name, list(arms))
    spec = OmegaConf.to_container(arms[name], resolve=True)
    unknown = set(spec) - ARM_KEYS
    if unknown:
        raise ConfigError(
            f"transfer.arms.{name}.{sorted(unknown)[0]}", spec[sorted(unknown)[0]], sorted(ARM_KEYS)
        )
    shared = {
        k: v
        for k, v in OmegaConf.to_container(cfg.transfer, resolve=True).items()
        if k in SHARED_KEYS
    }
    merged = {**shared, **{k: v for k, v in spec.items() if v is not None}}
    init_groups = resolve_depth(
        merged.pop("init_groups", "all"), groups, f"transfer.arms.{name}.init_groups"
    )
    key = (
        "transfer.freeze_groups"
        if "freeze_groups" not in spec
        else f"transfer.arms.{name}.freeze_groups"
    )
    merged["freeze_groups"] = resolve_depth(merged["freeze_groups"], groups, key)
    return Arm(name, init_groups, FitSettings(**merged, seed=seed))


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
    if int(cfg.transfer.seeds) < 1:
        raise ConfigError("transfer.seeds", cfg.transfer.seeds, "an integer >= 1")
    return names


def transfer_seeds(cfg: DictConfig) -> list[int]:
    return [int(cfg.seed) + i for i in range(int(cfg.transfer.seeds))]
