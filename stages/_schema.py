"""The config's value rules (types and ranges), checked before a stage does any work.

One table for every key a stage reads: a wrongly typed or out-of-range value stops the stage with
one line naming the key, the value and what is allowed (``transfer.epochs='abc' is not allowed;
expected an integer >= 1``), whether it came from ``conf/``, ``dvc exp run -S`` or the command
line. Rules whose key is absent are skipped unless the key is required; ``*`` matches one level
(every arm). Checks that need the data or the model (a freeze depth up to the backbone's number
of groups, a label budget up to the smallest class) stay where those are known.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError

_ABSENT = object()
MANDATORY = "???"


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Rule:
    """What values a key takes: a test and its description for the error message."""

    ok: Callable[[object], bool]
    allowed: str
    required: bool = False

    def optional(self) -> Rule:
        """The same rule, also accepting null."""
        return Rule(lambda v: v is None or self.ok(v), f"{self.allowed}, or null", self.required)

    def needed(self) -> Rule:
        """The same rule for a key that must be present."""
        return Rule(self.ok, self.allowed, True)

    def meaning(self, note: str) -> Rule:
        """The same rule, its description followed by what the value means."""
        return Rule(self.ok, f"{self.allowed} ({note})", self.required)


def integer(low: int, high: int | None = None) -> Rule:
    text = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
    return Rule(lambda v: _int(v) and v >= low and (high is None or v <= high), text)


def number(low: float, high: float | None = None, *, open_low: bool, open_high: bool = False):
    """A finite number in the interval (low open or closed, high open or closed or none)."""

    def ok(v: object) -> bool:
        if not _num(v) or (v <= low if open_low else v < low):
            return False
        return high is None or (v < high if open_high else v <= high)

    if high is None:
        return Rule(ok, f"a finite number {'>' if open_low else '>='} {low}")
    left, right = "(" if open_low else "[", ")" if open_high else "]"
    return Rule(ok, f"a number in {left}{low}, {high}{right}")


def interval(low: float, *, open_low: bool) -> Rule:
    """A ``[low, high]`` range: two finite numbers above ``low``, the first not above the second."""

    def ok(v: object) -> bool:
        if not (isinstance(v, list) and len(v) == 2 and all(_num(x) for x in v)):
            return False
        return (v[0] > low if open_low else v[0] >= low) and v[0] <= v[1]

    bound = f"{'>' if open_low else '>='} {low}"
    return Rule(ok, f"a range [low, high] of finite numbers {bound} with low <= high")


def one_of(*choices: object) -> Rule:
    return Rule(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


BOOL = Rule(lambda v: isinstance(v, bool), "true or false")
TEXT = Rule(lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
MAPPING = Rule(lambda v: isinstance(v, dict), "a mapping of keys to values")
TARGET = Rule(
    lambda v: isinstance(v, dict) and isinstance(v.get("_target_"), str),
    "a config with a _target_ (a mapping naming the callable to build)",
)
SIZE = Rule(
    lambda v: v == "model" or (_int(v) and 1 <= v <= 4096),
    "an integer in [1, 4096], or 'model' (the backbone's pretrained input size)",
)
DEPTH = Rule(lambda v: v == "all" or (_int(v) and v >= 0), "an integer >= 0 or 'all'")
NAMES = Rule(
    lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(n, str) for n in v),
    "a non-empty list of names",
)
BUDGETS = Rule(
    lambda v: isinstance(v, list) and all(_int(n) and n >= 1 for n in v),
    "a list of integers >= 1",
)
CHANNELS = Rule(lambda v: _int(v) and v in (1, 3), "1 (grayscale) or 3 (RGB)")
SPLITS = Rule(
    lambda v: (
        isinstance(v, dict)
        and "train" in v
        and set(v) <= {"train", "val", "test"}
        and all(isinstance(a, dict) for a in v.values())
    ),
    "a mapping of train (and optionally val, test) to the dataset class's arguments",
)
POSITIVE = number(0, open_low=True)
# rates and decays end up as float32 factors in the optimiser (3.5e39 overflowed in SGD's step)
RATE, DECAY = number(0, 1e6, open_low=True), number(0, 1e6, open_low=False)
FRACTION = number(0, 1, open_low=True, open_high=True)
# Lightning's precision names (lightning.fabric.connectors._PRECISION_INPUT_STR)
PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")
PRECISIONS += ("64", "32", "16", "bf16", 64, 32, 16)
ACCELERATORS = ("cpu", "gpu", "cuda", "auto")
DEVICES = Rule(lambda v: v == "auto" or (_int(v) and v >= 1), "an integer >= 1 or 'auto'")
# Trainer arguments the stages set themselves: a value here would clash with theirs.
FIT_SETS = ("max_epochs", "logger", "callbacks", "default_root_dir", "enable_checkpointing")
FIT_SETS += ("num_sanity_val_steps", "enable_model_summary", "log_every_n_steps")

FIT = {
    "epochs": integer(1),
    "batch_size": integer(1),
    "head_lr": RATE,
    "backbone_lr": RATE,
    "lr_decay": number(0, 1, open_low=True),
    "weight_decay": DECAY,
    "freeze_groups": DEPTH,
    "optimizer": TARGET,
    "scheduler": TARGET,
    "augment": TARGET.optional(),
    "objectives": MAPPING,
    "monitor": TEXT.optional(),
    "steps_per_epoch": integer(1).optional(),
}
_NEEDED = set(FIT) - {"augment", "monitor", "steps_per_epoch"}
RULES: dict[str, Rule] = {
    "seed": integer(0, 2**32 - 1).needed(),
    "data.image_size": SIZE,
    "data.channels": CHANNELS,
    "data.normalize": one_of("source", "model", "none"),
    "data.match_classes": BOOL,
    "data.labels_per_class": integer(1).needed(),
    "data.val_per_class": integer(1).optional(),
    "data.source": TARGET.needed(),
    "data.target": TARGET.needed(),
    # the loaders' arguments (conf/data/source, conf/data/target); each key is one loader's
    "data.*.image_size": SIZE,
    "data.*.channels": CHANNELS,
    "data.*.test_fraction": FRACTION,
    "data.*.val_per_class": integer(1),
    "data.*.path": TEXT,
    "data.*.name": TEXT.optional(),
    # synthetic digits (pipeline.data.images.synthetic_digits.render_digits)
    "data.*.n_train": integer(10).meaning("at least one image per class"),
    "data.*.n_val": integer(10).meaning("at least one image per class"),
    "data.*.shuffle_labels": BOOL,
    "data.*.fonts": NAMES.meaning("font files in matplotlib's font folder, or absolute paths"),
    "data.*.stroke_widths": Rule(
        lambda v: isinstance(v, list) and len(v) > 0 and all(_int(w) and 0 <= w <= 48 for w in v),
        "a non-empty list of integers in [0, 48] (extra stroke in pixels of the 48 px font)",
    ),
    "data.*.max_rotation": number(0, 180, open_low=False).meaning("degrees, either way"),
    "data.*.scale": interval(0, open_low=True).meaning("the zoom factor's range"),
    "data.*.max_shear": number(0, 90, open_low=False, open_high=True).meaning(
        "degrees, either way"
    ),
    "data.*.max_translate": number(0, 1, open_low=False).meaning(
        "the largest shift, a fraction of half the image size"
    ),
    "data.*.blur_sigma": interval(0, open_low=False).meaning("the blur sigma's range, in pixels"),
    "data.*.noise_std": number(0, open_low=False),
    "data.*.native_size": integer(1, 4096)
    .optional()
    .meaning("the size images are made at before resizing; null: image_size"),
    # files on disk (pipeline.data.images.folder, pipeline.data.images.torchvision_sets)
    "data.*.root": TEXT,
    "data.*.layout": one_of("classes", "splits"),
    "data.*.dataset": TARGET,
    "data.*.splits": SPLITS,
    "data.*.classes": NAMES.optional().meaning("strings, index = label: quote digits, '0'"),
    "data.*.max_images": integer(1).optional(),
    "data.*.workers": integer(0).meaning("decoding worker processes; 0 decodes in this process"),
    "data.*.cache": TEXT.optional(),
    "data.*.key": one_of("data.source", "data.target"),
    "model": TARGET.needed(),
    "pretrain.epochs": integer(1).needed(),
    "pretrain.batch_size": integer(1).needed(),
    "pretrain.lr": RATE.needed(),
    "pretrain.weight_decay": DECAY,
    "pretrain.optimizer": TARGET,
    "pretrain.scheduler": TARGET,
    "tune.enabled": BOOL.needed(),
    "tune.study_name": TEXT,
    "tune.n_trials": integer(1).needed(),
    "tune.timeout": POSITIVE.optional(),
    "tune.storage": TEXT.optional(),
    "tune.max_failures": integer(1),
    "tune.heartbeat_interval": integer(1),
    "tune.grace_period": integer(1),
    "tune.epochs": integer(1).needed(),
    "tune.subsets": integer(1),
    "tune.sampler": TARGET,
    "tune.pruner": TARGET,
    "tune.space": MAPPING,
    "transfer.run": NAMES.needed(),
    "transfer.primary": TEXT.needed(),
    "transfer.baseline": TEXT.needed(),
    "transfer.seeds": integer(1).needed(),
    **{f"transfer.{k}": r.needed() if k in _NEEDED else r for k, r in FIT.items()},
    "transfer.arms": MAPPING.needed(),
    "transfer.arms.*": MAPPING,
    "transfer.arms.*.init_groups": DEPTH.optional(),
    **{f"transfer.arms.*.{k}": r.optional() for k, r in FIT.items()},
    "evaluate.confidence": FRACTION,
    "evaluate.scores.enabled": BOOL,
    "evaluate.scores.max_samples": integer(2),
    "evaluate.scores.mmd_permutations": integer(1),
    "evaluate.curves.freeze_depth.enabled": BOOL,
    "evaluate.curves.freeze_depth.seeds": integer(1).optional(),
    "evaluate.curves.label_efficiency.labels_per_class": BUDGETS,
    "evaluate.curves.label_efficiency.seeds": integer(1).optional(),
    "evaluate.large_validation": BOOL,
    "trainer": MAPPING.needed(),
    "trainer.accelerator": one_of(*ACCELERATORS).needed(),
    "trainer.devices": DEVICES,
    "trainer.precision": one_of(*PRECISIONS),
    "trainer.deterministic": Rule(lambda v: v in (True, False, "warn"), "true, false or 'warn'"),
    "trainer.enable_progress_bar": BOOL.optional(),
    "trainer.threads": integer(1).optional(),
    "trainer.ensembles": BOOL.optional(),
    "tracking.experiment": TEXT.needed(),
    "paths.*": TEXT,
}
# The config sections each stage reads (as dvc.yaml lists its params), plus where it writes.
_TARGET_RUNS = ("seed", "setting", "data.labels_per_class", "data.val_per_class", "model")
_TARGET_RUNS += ("trainer", "transfer")
READS = {
    "prepare": ("seed", "data", "model"),
    "pretrain": ("seed", "model", "pretrain", "trainer"),
    "rank": (
        "seed",
        "source",
        "data.labels_per_class",
        "transfer",
        "trainer",
        "evaluate.confidence",
    ),
    "tune": (*_TARGET_RUNS, "tune"),
    "transfer": (*_TARGET_RUNS, "tune.enabled"),
    "evaluate": (*_TARGET_RUNS, "tune.enabled", "evaluate"),
}


# Sections whose keys are fixed: `+key` may add only a key the rules above know (an arm's
# optional setting, say), never a typo. Elsewhere (a callable's arguments under `_target_`, new
# arms, tune.space entries, trainer arguments, validators) new keys are the point of `+`.
CLOSED = ("", "data", "pretrain", "tune", "transfer", "transfer.arms.*", "evaluate")
CLOSED += ("evaluate.scores", "evaluate.curves", "evaluate.curves.*", "paths", "tracking")
CLOSED += ("setting", "source")


def _matches(key: str, pattern: str) -> bool:
    parts, wanted = key.split(".") if key else [], pattern.split(".") if pattern else []
    if len(parts) != len(wanted):
        return False
    return all(w in ("*", p) for p, w in zip(parts, wanted, strict=True))


def known_keys(section: str) -> set[str] | None:
    """The keys the rules know under ``section`` (dotted, ``""`` for the top level), or None
    when the section takes any key."""
    if not any(_matches(section, pattern) for pattern in CLOSED):
        return None
    return {
        leaf
        for pattern in RULES
        for parent, _, leaf in [pattern.rpartition(".")]
        if leaf != "*" and _matches(section, parent)
    }


def _keys(tree: object, pattern: str, prefix: str = "") -> Iterator[tuple[str, object]]:
    """``(key, value)`` for every key matching ``pattern`` (``*``: any one key); values of
    absent keys are ``_ABSENT``."""
    head, _, rest = pattern.partition(".")
    nodes = tree.items() if head == "*" and isinstance(tree, dict) else []
    if head != "*":
        nodes = [(head, tree.get(head, _ABSENT) if isinstance(tree, dict) else _ABSENT)]
    for name, value in nodes:
        key = f"{prefix}{name}"
        if not rest:
            yield key, value
        elif isinstance(value, dict):
            yield from _keys(value, rest, key + ".")


def _reads(stage: str, key: str) -> bool:
    sections = (*READS.get(stage, ()), "tracking", f"paths.{stage}")
    return any(key == s or key.startswith(s + ".") for s in sections)


def _mandatory(tree: object, prefix: str) -> Iterator[str]:
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _mandatory(v, f"{prefix}{k}.")
    elif tree == MANDATORY:
        yield prefix.rstrip(".")


def _plain(cfg: DictConfig) -> dict:
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "config"
        raise ConfigError(key, getattr(err, "value", None), f"a resolvable value ({err})") from None


def check_config(cfg: DictConfig, stage: str) -> None:
    """Raise :class:`ConfigError` for the first value ``stage`` reads that breaks a rule.

    Also refuses ``trainer.accelerator=gpu`` where torch sees no CUDA device, and trainer
    arguments that Lightning's ``Trainer`` does not take or that the stages set themselves.
    """
    tree = _plain(cfg)
    for key in _mandatory(tree, ""):
        if _reads(stage, key):
            raise ConfigError(key, MANDATORY, "a value (this key has none: set it)")
    for pattern, rule in RULES.items():
        for key, value in _keys(tree, pattern):
            if not _reads(stage, key) or (value is _ABSENT and not rule.required):
                continue
            if value is _ABSENT:
                raise ConfigError(key, "<missing>", f"{rule.allowed} (the key is required)")
            if not rule.ok(value):
                raise ConfigError(key, value, rule.allowed)
    _check_setting(tree, stage)
    _check_monitors(tree, stage)
    # a skipped tune trains nothing: it need not load Lightning to check the Trainer (start-up)
    skipped = stage == "tune" and not tree.get("tune", {}).get("enabled", True)
    if _reads(stage, "trainer") and not skipped:
        _check_trainer(tree["trainer"])


def _check_setting(tree: dict, stage: str) -> None:
    """``setting.name`` agrees with the option that set the rest: ``-S setting.name=...``
    alone switched the name without the keys ``setting=transductive`` sets (its validators,
    ``data.match_classes``, its arms), a config no setting describes."""
    setting = tree.get("setting") or {}
    name = setting.get("name")
    if not _reads(stage, "setting.name") or name not in ("inductive", "transductive"):
        return
    if (name == "transductive") != ("validators" in setting):
        raise ConfigError(
            "setting.name",
            name,
            f"the setting chosen as a group: setting={name} (python -m stages.params "
            f"setting={name}, or dvc exp run -S setting={name}), which also sets its other keys",
        )


def _check_monitors(tree: dict, stage: str) -> None:
    """``transfer.monitor`` and every arm's ``monitor`` name a metric each run logs: validation
    accuracy, or (transductive) one of ``setting.validators``; null keeps the last epoch."""
    setting = tree.get("setting") or {}
    allowed = [None, "val/acc"]
    if setting.get("name") == "transductive":
        allowed += [f"val/{n}" for n in setting.get("validators") or {}]
    for pattern in ("transfer.monitor", "transfer.arms.*.monitor"):
        for key, value in _keys(tree, pattern):
            if _reads(stage, key) and value is not _ABSENT and value not in allowed:
                raise ConfigError(key, value, allowed)


# trainer keys that are ours, not lightning.pytorch.Trainer arguments
OWN_TRAINER_KEYS = ("threads", "ensembles")


def _check_trainer(trainer: dict) -> None:
    import inspect

    import torch
    from lightning.pytorch import Trainer

    if trainer["accelerator"] in ("gpu", "cuda") and not torch.cuda.is_available():
        allowed = "'cpu' or 'auto' (torch sees no CUDA device on this machine)"
        raise ConfigError("trainer.accelerator", trainer["accelerator"], allowed)
    known = set(inspect.signature(Trainer.__init__).parameters) - {"self"}
    for key, value in trainer.items():
        if key in OWN_TRAINER_KEYS:
            continue
        if key in FIT_SETS:
            raise ConfigError(f"trainer.{key}", value, "nothing: the stages set it themselves")
        if key not in known:
            raise ConfigError(f"trainer.{key}", value, "a lightning.pytorch.Trainer argument")
    kwargs = {k: v for k, v in trainer.items() if k not in OWN_TRAINER_KEYS}
    kwargs["enable_progress_bar"] = bool(kwargs.get("enable_progress_bar"))  # null: a terminal's
    try:  # Lightning checks its own arguments when a Trainer is made; no work starts here
        Trainer(**kwargs, logger=False, enable_checkpointing=False, enable_model_summary=False)
    except Exception as err:
        allowed = f"settings lightning.pytorch.Trainer takes ({err})"
        raise ConfigError("trainer", kwargs, allowed) from None
