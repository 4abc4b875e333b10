"""What every stage entry point shares: params.yaml, CLI overrides, atomic outputs, MLflow setup.

Stages read ``params.yaml`` (composed from ``conf/`` by ``dvc exp run`` or ``python -m
stages.params``), never ``@hydra.main``: under DVC that would silently drop ``-S`` overrides.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from pipeline.errors import ConfigError, GraftlabError, Interrupted, StorageError
from pipeline.startup import keep_freed_memory
from pipeline.threads import fix_threads
from stages._lifecycle import guarded, interrupts, tracking_started
from stages._outputs import stage_output
from stages._schema import check_config

__all__ = ["check_config", "stage_output"]  # re-exported: the stages take them from here

PARAMS = Path("params.yaml")
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_conf(overrides: Sequence[str] = (), resolve: bool = True) -> dict:
    """Compose ``conf/`` exactly as DVC's Hydra integration does, as a plain dict (resolved
    unless ``resolve`` is false)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    if resolve:
        OmegaConf.resolve(cfg)
    return OmegaConf.to_container(cfg)


def _group_folder(group: str, option: object) -> Path | None:
    """The folder of config group ``group`` when ``option`` is one of its options; None when
    ``group`` is not a config group of ``conf/``."""
    folder = CONF_DIR / group.replace(".", "/")
    if not folder.is_dir() or not isinstance(option, str):
        return None
    options = sorted(p.stem for p in folder.glob("*.yaml"))
    if option not in options:
        raise ConfigError(group.replace("/", "."), option, options)
    return folder


def _group_option(group: str, option: str) -> dict:
    """Config group ``group`` (``trainer``, ``data/target``) set to ``option`` as in Hydra, its
    interpolations unresolved."""
    composed = compose_conf([f"{group.replace('.', '/')}={option}"], resolve=False)
    return OmegaConf.select(OmegaConf.create(composed), group.replace("/", "."))


# keys that say which option of a group that sets keys elsewhere is in use: set alone, they
# would switch the setting without its other keys (value -> (group, option))
IDENTITY = {
    "setting.name": lambda v: ("setting", str(v)),
    "pretrain.external": lambda v: ("pretrain", "external" if v is True else "default"),
}


def _global_choice(group: str, option: object) -> tuple[str, str] | None:
    """``(group, option)`` when the override chooses an option of a group whose options set
    keys outside it (``@package _global_``: ``setting``, ``pretrain``), directly or through the
    key that names it (:data:`IDENTITY`); None for any other override."""
    key = group.replace("/", ".")
    if key in IDENTITY:
        group, option = IDENTITY[key](option)
    folder = _group_folder(group, option)  # an unknown option: one line naming them
    if folder is None or not any(
        p.read_text().startswith("# @package _global_") for p in folder.glob("*.yaml")
    ):
        return None
    return group, str(option)


def _check_global_choice(cfg: DictConfig, group: str, option: str) -> None:
    """A group whose options set keys elsewhere (``setting=transductive`` sets ``data``,
    ``transfer`` and ``tune`` keys) cannot be switched on top of a composed config: replacing
    its node alone would leave the other option's keys, a silently mixed config. Choosing what
    params.yaml already has is allowed."""
    key = group.replace("/", ".")
    wanted = OmegaConf.select(OmegaConf.create(compose_conf([f"{group}={option}"])), key)
    current = OmegaConf.select(cfg, key)
    if current is not None and OmegaConf.to_container(current, resolve=True) == wanted:
        return
    raise ConfigError(
        key,
        option,
        f"it chosen in params.yaml (python -m stages.params {group}={option}, or dvc exp run -S "
        f"{group}={option}): this group also sets keys outside {key}, which a stage's command "
        "line would leave as they are",
    )


def _has(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` exists in ``cfg``, also when its value is still missing (``???``)."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return isinstance(node, DictConfig) and leaf in list(node)  # `in node` skips ??? values


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Apply Hydra-syntax overrides (``a.b=1``, ``+new=2``, ``~gone``) to a copy of ``cfg``.

    Keys must exist unless prefixed with ``+``, as in Hydra; an unknown key raises
    :class:`ConfigError`.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    cfg = cfg.copy()
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as err:
        raise ConfigError(
            "override", " ".join(overrides), f"Hydra override syntax ({err})"
        ) from err
    for o in parsed:
        group = o.key_or_group
        key = group.replace("/", ".")
        if not o.is_delete() and (choice := _global_choice(group, o.value())) is not None:
            _check_global_choice(cfg, *choice)  # no half switch; what params.yaml has: no change
            continue
        if not o.is_delete() and _group_folder(group, o.value()) is not None:
            node = _group_option(group, o.value())
            OmegaConf.update(cfg, key, node, merge=False, force_add=True)
            OmegaConf.resolve(cfg)  # its ${...} refer to this config's values
            continue
        exists = _has(cfg, key)
        if o.is_delete():
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if not exists:
                raise ConfigError(key, "~", "an existing key to delete")
            del node[leaf]
            continue
        if not exists:
            _check_new_key(cfg, key, o.value(), o.is_add() or o.is_force_add())
        OmegaConf.update(cfg, key, o.value(), merge=False, force_add=True)
    return cfg


def _check_new_key(cfg: DictConfig, key: str, value: object, added: bool) -> None:
    """Refuse a key ``cfg`` does not have, unless ``+`` adds it where new keys make sense (a
    callable's argument, a new arm, a tune.space entry; not a typo of a known setting)."""
    import difflib

    from stages._schema import known_keys

    parent, _, leaf = key.rpartition(".")
    levels = key.split(".")
    for i in range(1, len(levels)):  # a key reaches into a list only through an existing item
        above = ".".join(levels[:i])
        found = OmegaConf.select(cfg, above, default=None)
        if not isinstance(found, ListConfig):
            continue
        if i + 1 < len(levels) and levels[i].isdigit() and int(levels[i]) < len(found):
            continue
        items = f"{len(found)} item{'s' * (len(found) != 1)}"
        allowed = f"the whole list set at once, {above}=[...] ({above} holds a list of {items})"
        raise ConfigError(key, value, allowed)
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    at = next((i for i in range(1, len(levels)) if not _has(cfg, ".".join(levels[:i]))), None)
    if at is None and parent and not isinstance(node, DictConfig):  # a value, not a section
        raise ConfigError(key, value, f"a key of a section ({parent} holds the value {node!r})")
    # under a _target_ the keys are the callable's own arguments: it checks them when built
    callable_args = isinstance(node, DictConfig) and "_target_" in node
    known = None if callable_args else known_keys(parent)
    if added and (known is None or leaf in known):
        return
    if at is not None and not added:
        # a missing level above the leaf (an arm that does not exist): name that level, not
        # the leaf, which the suggestion would have offered back unchanged
        above, name = ".".join(levels[: at - 1]), levels[at - 1]
        found = OmegaConf.select(cfg, above) if above else cfg
        if isinstance(found, DictConfig):
            names = sorted(found)
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {above + '.' if above else ''}{close[0]}?" if close else ""
            where, listed = above or "the config", ", ".join(names)
            allowed = f"an existing config key ({where} has no {name}: {listed}{hint})"
            raise ConfigError(key, value, allowed)
    names = set(node) if isinstance(node, DictConfig) else set()
    names |= known or set()
    close = difflib.get_close_matches(leaf, sorted(names), n=1)
    hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
    if added:
        where = f"{parent} takes" if parent else "the config takes at the top level"
        raise ConfigError(key, value, f"a key {where}: {', '.join(sorted(names))}{hint}")
    if known is not None and leaf in known:  # an optional key (an arm's own monitor, ...)
        raise ConfigError(key, value, f"an existing config key; add this optional one with +{key}")
    extra = "" if known is not None else "; + adds a new one here"
    raise ConfigError(key, value, f"an existing config key{hint}{extra}")


_explicit: set[str] = set()  # keys this process's command line set


def override_keys(overrides: Sequence[str]) -> set[str]:
    """The dotted config keys that ``overrides`` set (``trainer=gpu`` sets ``trainer``)."""
    keys = set()
    for text in overrides:
        key = text.partition("=")[0].lstrip("+~").removeprefix("+")
        keys.add(key.replace("/", "."))
    return keys


def explicit(key: str) -> bool:
    """Whether the command line set ``key`` or a section holding it."""
    return any(key == k or key.startswith(k + ".") for k in _explicit)


def load_config(overrides: Sequence[str] = (), params: Path = PARAMS) -> DictConfig:
    """``params.yaml`` with command-line overrides applied (their keys are remembered: an
    explicit value is never replaced silently, see :func:`stages._build.tuned_config`)."""
    from yaml import YAMLError

    if not params.is_file():
        raise GraftlabError(f"{params} not found; run from the repository root")
    try:
        cfg = OmegaConf.load(params)
    except (OSError, YAMLError) as err:
        raise ConfigError(str(params), "its contents", f"readable YAML ({err})") from None
    cfg = apply_overrides(cfg, overrides)
    _explicit.clear()
    _explicit.update(override_keys(overrides))
    return cfg


def use_tracking(cfg: DictConfig) -> tuple[str, str]:
    """Point MLflow at the repository's store; return (tracking URI, experiment id).

    Raises:
        StorageError: The store cannot be opened or written (a read-only or corrupt
            ``mlflow.db``, an unreachable server).
    """
    from pipeline.tracking.store import ARTIFACTS_NAME, repo_root, tracking_uri, use_store

    root = repo_root(Path.cwd())
    uri = tracking_uri(root)
    try:
        experiment_id = use_store(uri, cfg.tracking.experiment, root / ARTIFACTS_NAME)
    except StorageError:
        raise
    except Exception as err:  # MLflow and SQLAlchemy raise many types for one cause: the store
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(uri, f"cannot use this MLflow store ({first[:300]})") from err
    tracking_started(experiment_id)
    return uri, experiment_id


def _not_sigterm_notice(record: logging.LogRecord) -> bool:
    return "Received SIGTERM" not in record.getMessage()


def quiet_libraries() -> None:
    """Keep the console readable: Lightning's per-Trainer banners and known-harmless warnings."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Lightning logs "[rank: 0] Received SIGTERM: 15" before the stage's own interrupt line
    notifier = logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector")
    if _not_sigterm_notice not in notifier.filters:
        notifier.addFilter(_not_sigterm_notice)
    for pattern in (
        r".*isinstance\(treespec, LeafSpec\).*",
        r".*module\(s\) in eval mode.*",
        r".*does not have many workers.*",
        r".*Trainer.fit. stopped.*",
    ):
        warnings.filterwarnings("ignore", message=pattern)


def run_stage(
    stage: str, run: Callable[[DictConfig], dict], argv: Sequence[str] | None = None
) -> None:
    """Entry point shell: config from params.yaml + argv overrides, run, exit non-zero on errors.

    The config is checked (:mod:`stages._schema`) and leftovers of dead runs of this stage are
    swept (:mod:`stages._lifecycle`) before any work. User errors (bad config, missing/corrupt
    files, diverged training, an unusable store) print one clear line and exit with status 2;
    SIGINT/SIGTERM print ``interrupted`` and exit 130/143. Either way the stage's MLflow runs are
    ended (FAILED, or KILLED for an interrupt) and no temp output folder is left.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_libraries()
    keep_freed_memory()  # before the stage allocates its tensors
    main = sys.modules.get("__main__")
    own_process = getattr(getattr(main, "__spec__", None), "name", None) == f"stages.{stage}"
    with interrupts(exiting=own_process):
        try:
            cfg = load_config(sys.argv[1:] if argv is None else argv)
            check_config(cfg, stage)
            fix_threads(cfg.trainer.get("threads"))  # never follows other processes
            with guarded(stage, cfg):
                run(
                    cfg
                )  # prints its own summary line; evaluate's says where the report and run are
        except Interrupted as err:
            killed = f": {err.runs_ended} MLflow run(s) KILLED" if err.runs_ended else ""
            print(f"stage {stage} {err}{killed}", file=sys.stderr)
            sys.exit(err.exit_code)
        except GraftlabError as err:
            print(f"error in stage {stage}: {err}", file=sys.stderr)
            sys.exit(2)
        finally:
            _explicit.clear()  # in-process callers (tests) run stages one after another
