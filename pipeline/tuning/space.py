"""Search spaces written in config, mirroring the config tree they set.

A leaf is a dict with a ``type``::

    transfer:
      freeze_groups: {type: int, low: 0, high: groups}     # "groups": the backbone's G
      head_lr: {type: float, low: 0.005, high: 0.5, log: true}
      optimizer: {type: categorical, choices: [sgd, adamw]}

and sets the config key ``transfer.freeze_groups`` etc. in every trial.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import ConfigError

TYPES = ("int", "float", "categorical")


@dataclass(frozen=True)
class Param:
    """One searched config key."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    def suggest(self, trial: object) -> object:
        """Draw this parameter from an ``optuna.Trial``."""
        if self.type == "int":
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1)
            )
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        return trial.suggest_categorical(self.key, list(self.choices))


def _leaves(tree: dict, prefix: str = "") -> dict[str, dict]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and "type" in v:
            out[prefix + k] = v
        elif isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            raise ConfigError(f"tune.space.{prefix}{k}", v, "a dict with a 'type' key")
    return out


def parse_space(space: dict, groups: int) -> list[Param]:
    """Validate the config's search space and return its parameters.

    Args:
        space: The ``tune.space`` tree.
        groups: The backbone's number of layer groups (replaces the bound ``groups``).

    Raises:
        ConfigError: Unknown type, missing or empty range, bad log range, no parameters.
    """
    leaves = _leaves(space)
    if not leaves:
        raise ConfigError("tune.space", space, "at least one parameter")
    params = []
    for key, spec in leaves.items():
        name = f"tune.space.{key}"
        kind = spec.get("type")
        if kind not in TYPES:
            raise ConfigError(f"{name}.type", kind, TYPES)
        if kind == "categorical":
            choices = tuple(spec.get("choices") or ())
            if not choices:
                raise ConfigError(f"{name}.choices", spec.get("choices"), "a non-empty list")
            params.append(Param(key, kind, choices=choices))
            continue
        bounds = [groups if spec.get(b) == "groups" else spec.get(b) for b in ("low", "high")]
        if any(not isinstance(b, int | float) or isinstance(b, bool) for b in bounds):
            raise ConfigError(name, spec, "numeric low and high (or high: groups)")
        low, high = bounds
        if not low < high:
            raise ConfigError(
                name, spec, f"low < high (the range [{low}, {high}] is empty or a point)"
            )
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise ConfigError(f"{name}.low", low, "a number > 0 when log: true")
        params.append(Param(key, kind, low, high, log, spec.get("step")))
    return params
