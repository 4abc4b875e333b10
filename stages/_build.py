"""Config sections -> pipeline objects: the one place that knows params.yaml and pipeline/."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from pipeline.data.checks import check_domain
from pipeline.data.domain import Domain
from pipeline.errors import ConfigError, DataError, GraftlabError
from pipeline.objectives import Objective
from pipeline.progress import interactive
from pipeline.transfer.arms import Arm, ModelFactory
from pipeline.transfer.freezing import resolve_depth
from pipeline.transfer.settings import FitSettings, describe
from pipeline.transfer.train import TargetTask

_FACTORIES = ("optimizer", "scheduler", "augment")
SHARED_KEYS = set(FitSettings.__dataclass_fields__) - {"seed", "section", "origins"}
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
        if str(err).startswith("Error locating target"):
            allowed = f"an importable callable ({cause or err})"
            raise ConfigError(f"{key}._target_", node["_target_"], allowed) from err
        # the callable ran and rejected its settings
        settings = {k: v for k, v in dict(node).items() if k != "_target_"}
        what = f"{type(cause).__name__}: {cause}" if cause else str(err)
        allowed = f"valid settings for {node['_target_']} ({what})"
        raise ConfigError(key, settings, allowed) from err


def build_domain(cfg: DictConfig, which: str) -> Domain:
    """The source or target dataset described by ``data.<which>``, checked
    (:func:`pipeline.data.checks.check_domain`)."""
    domain = instantiate(cfg, f"data.{which}", seed=cfg.seed)
    if not isinstance(domain, Domain):
        target = cfg.data[which]["_target_"]
        raise ConfigError(f"data.{which}._target_", target, "a loader returning a Domain")
    check_domain(domain, domain.recipe.get("path") or f"data.{which} ({domain.name})")
    return domain


def model_factory(cfg: DictConfig, pretrained: bool = False) -> ModelFactory:
    """``num_classes -> GroupedNet`` for the configured backbone.

    ``model.weights`` (a pretrained file) only initialise the source model (``pretrained``):
    every target arm starts from the source model's groups or, like ``scratch``, from a seeded
    random init, never from the file (whose folder's config still sets the architecture).
    """
    skip = {} if pretrained or "weights" not in cfg.model else {"load_weights": False}
    factory = partial(instantiate, cfg, "model", **skip)
    return lambda num_classes: factory(num_classes=num_classes)


PROBE_SIZES = (32, 64, 128, 224)  # tried in turn when data.image_size fails, to say what works


def check_input(model: object, shape: tuple[int, ...], target: str) -> None:
    """The backbone takes inputs of ``shape`` (one forward pass of zeros, in eval mode), so a
    resolution it cannot handle is a config error before training, not a traceback inside it."""
    import torch

    # Lightning keeps each submodule's train/eval mode at the start of fit, so the probe must
    # leave every module as it found it (a BatchNorm left in eval mode trains on its init stats)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()

    def takes(size: tuple[int, ...]) -> str | None:
        try:
            with torch.no_grad():
                model(torch.zeros(2, *size))
        except (RuntimeError, AssertionError, ValueError) as err:  # timm asserts a ViT's size
            return str(err) or type(err).__name__
        return None

    try:
        if (err := takes(shape)) is None:
            return
        for size in (s for s in PROBE_SIZES if len(shape) == 3 and s > shape[1]):
            if takes((shape[0], size, size)) is None:  # the images are too small for it
                allowed = f"a size {target} takes: {size} does, {shape[1]} does not ({err})"
                raise ConfigError("data.image_size", shape[1], allowed)
        allowed = f"a backbone that takes inputs of shape {shape} (data.image_size) ({err})"
        raise ConfigError("model._target_", target, allowed)
    finally:
        for m, training in modes:
            m.training = training


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


def _factories(spec: dict, origins: dict[str, str]) -> dict:
    """Optimiser, scheduler and augmentation factories from their ``_target_`` configs; the
    optimiser and scheduler are tried on a dummy parameter, so a callable that is not one fails
    here, naming its key, instead of inside training."""
    built = {
        k: None if spec[k] is None else instantiate({}, origins[k], spec[k])
        for k in _FACTORIES
        if k in spec
    }
    if built.get("optimizer") is not None:
        _probe(built, origins)
    return built


def _probe(built: dict, origins: dict[str, str]) -> None:
    import torch

    key, target = "optimizer", built["optimizer"]
    try:
        optimizer = target([{"params": [torch.zeros(1, requires_grad=True)], "lr": 0.1}])
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"it returned {type(optimizer).__name__}")
        if built.get("scheduler") is not None:
            key, target = "scheduler", built["scheduler"]
            scheduler = target(optimizer, 2)
            if not isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
                raise TypeError(f"it returned {type(scheduler).__name__}")
    except Exception as err:
        kind = "optimizer(param_groups)" if key == "optimizer" else "scheduler(optimizer, epochs)"
        allowed = f"a factory {kind} of torch's kind, with _partial_: true ({err})"
        raise ConfigError(origins[key], describe(target), allowed) from None


def pretrain_settings(cfg: DictConfig) -> FitSettings:
    p = OmegaConf.to_container(cfg.pretrain, resolve=True)
    origins = {k: f"pretrain.{k}" for k in (*_FACTORIES, "epochs", "batch_size", "weight_decay")}
    return FitSettings(
        epochs=p["epochs"],
        batch_size=p["batch_size"],
        head_lr=p["lr"],
        backbone_lr=p["lr"],
        weight_decay=p["weight_decay"],
        seed=cfg.seed,
        section="pretrain",
        origins=origins | {"head_lr": "pretrain.lr", "backbone_lr": "pretrain.lr"},
        **_factories(p, origins),
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
    # every setting names the key it came from: the arm's own, else the shared one
    origins = {
        k: f"transfer.arms.{name}.{k}" if spec.get(k) is not None else f"transfer.{k}"
        for k in {*SHARED_KEYS, "objectives"}
    }
    init_groups = resolve_depth(
        merged.pop("init_groups", "all"), groups, f"transfer.arms.{name}.init_groups"
    )
    merged["freeze_groups"] = resolve_depth(
        merged["freeze_groups"], groups, origins["freeze_groups"]
    )
    recipe = dict(merged)
    make = objectives_factory(merged.pop("objectives"), origins["objectives"])
    merged |= _factories(merged, origins)
    settings = FitSettings(**merged, seed=seed, section="transfer", origins=origins)
    return Arm(name, init_groups, settings, make, recipe)


def trial_arm(cfg: DictConfig, groups: int) -> Callable[[dict, int], Arm]:
    """The primary arm for the config with a trial's ``{key: value}`` applied, for a seed,
    trained for ``tune.epochs`` (or the trial's ``transfer.epochs`` when the space searches it).

    A trial's seeds share one build of its arm (only the seed differs), and trials that set the
    same keys (every trial of a space) overwrite them in one private copy of the config: copying
    the whole config per call cost ~11 ms, a sixth of a pruned trial's wall time
    (``tests/benchmarks/bench_tune.py``).
    """
    state: dict = {"keys": None, "cfg": None, "values": None, "arm": None}

    def build(values: dict) -> Arm:
        if state["keys"] != set(values):  # other keys: start again from the config as given
            state["keys"], state["cfg"] = set(values), cfg.copy()
        scratch = state["cfg"]
        for key, value in values.items():
            OmegaConf.update(scratch, key, value)
        built = arm(scratch, cfg.transfer.primary, groups, int(cfg.seed))
        epochs = int(values.get("transfer.epochs", cfg.tune.epochs))
        settings = dataclasses.replace(built.settings, epochs=epochs)
        return dataclasses.replace(built, settings=settings)

    def arm_for(values: dict, seed: int) -> Arm:
        key = repr(sorted(values.items()))  # 1, 1.0 and True are equal, but not the same setting
        if state["arm"] is None or state["values"] != key:
            state["values"], state["arm"] = None, None  # a failed build keeps no stale arm
            built = build(values)
            state["values"], state["arm"] = key, built
        built = state["arm"]
        return dataclasses.replace(built, settings=dataclasses.replace(built.settings, seed=seed))

    return arm_for


def arm_names(cfg: DictConfig) -> list[str]:
    """Arms to run (``transfer.run``), checked against the defined arms, primary and baseline."""
    names = list(cfg.transfer.run)
    defined = list(cfg.transfer.arms)
    for name in names:
        if name not in defined:
            raise ConfigError("transfer.run", name, defined)
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError("transfer.run", names, f"each arm named once ({', '.join(twice)} twice)")
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
    """``cfg`` with the tune stage's best values applied, and the best.yaml contents.

    With ``tune.enabled`` false best.yaml is not read: the config's values are used as they are.
    An explicit value always wins over a tuned one: a tuned key keeps the config's value when
    the command line set it, or when it differs from the value the study started from (``base``
    in best.yaml; e.g. ``dvc exp run -S transfer.head_lr=0.1`` after tuning). Such keys are
    listed under ``kept`` (:func:`say_kept` logs them); ``overrides`` lists only the tuned
    values applied, ``tuned_values`` all of best.yaml's.

    Raises:
        DataError: Tuning is on but best.yaml is missing or unreadable.
    """
    from stages._shell import explicit

    if not cfg.tune.enabled:
        return cfg, {}
    try:
        best = yaml.safe_load(best_path.read_text()) or {}
        tuned = dict(best.get("overrides") or {})
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError) as err:
        problem = f"cannot read the tuned settings ({err}); run the tune stage first"
        raise DataError(best_path, f"{problem}, or set tune.enabled=false") from None
    base = best.get("base") or {}
    cfg = cfg.copy()
    kept, applied = {}, {}
    for key, value in tuned.items():
        current = OmegaConf.select(cfg, key, default="__missing__")
        if current == "__missing__":
            raise ConfigError(f"{best_path}: {key}", value, "a key of this config; re-run tune")
        if explicit(key) or (key in base and current != base[key]):
            kept[key] = current
            continue
        OmegaConf.update(cfg, key, value)
        applied[key] = value
    return cfg, {**best, "overrides": applied, "kept": kept, "tuned_values": tuned}


def say_kept(best: dict) -> None:
    """Log the tuned keys an explicit value kept (:func:`tuned_config`); a stage calls it once
    its config is checked, so a refused value is one line, not a warning and then the error."""
    import logging

    for key, value in best.get("kept", {}).items():
        logging.getLogger("stages").warning(
            "%s=%r is set explicitly: kept instead of the tuned %r",
            key,
            value,
            best["tuned_values"][key],
        )
