"""What every stage entry point shares: params.yaml, CLI overrides, atomic outputs, MLflow setup.

Stages read ``params.yaml`` (composed from ``conf/`` by ``dvc exp run`` or ``python -m
stages.params``), never ``@hydra.main``: under DVC that would silently drop ``-S`` overrides.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError, GraftlabError
from pipeline.threads import fix_threads

PARAMS = Path("params.yaml")
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_conf(overrides: Sequence[str] = ()) -> dict:
    """Compose ``conf/`` exactly as DVC's Hydra integration does, resolved, as a plain dict."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return OmegaConf.to_container(cfg)


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
        key = o.key_or_group
        exists = OmegaConf.select(cfg, key, default="__missing__") != "__missing__"
        if o.is_delete():
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            if not exists:
                raise ConfigError(key, "~", "an existing key to delete")
            del node[leaf]
            continue
        if not exists and not (o.is_add() or o.is_force_add()):
            raise ConfigError(key, o.value(), "an existing config key (prefix with + to add one)")
        OmegaConf.update(cfg, key, o.value(), merge=False, force_add=True)
    return cfg


def load_config(overrides: Sequence[str] = (), params: Path = PARAMS) -> DictConfig:
    """``params.yaml`` with command-line overrides applied."""
    if not params.is_file():
        raise GraftlabError(f"{params} not found; run from the repository root")
    return apply_overrides(OmegaConf.load(params), overrides)


@contextmanager
def stage_output(final: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``final``; on success it replaces ``final`` in one rename.

    On any error the temp folder is removed and the previous outputs (if any) stay untouched, so a
    crash never leaves a half-written stage output.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}.old"
    if (final / ".gitignore").exists():  # DVC's list of cached outputs: keep it across the swap
        shutil.copy(final / ".gitignore", tmp / ".gitignore")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def use_tracking(cfg: DictConfig) -> tuple[str, str]:
    """Point MLflow at the repository's store; return (tracking URI, experiment id)."""
    from pipeline.tracking.store import ARTIFACTS_NAME, repo_root, tracking_uri, use_store

    root = repo_root(Path.cwd())
    uri = tracking_uri(root)
    return uri, use_store(uri, cfg.tracking.experiment, root / ARTIFACTS_NAME)


def quiet_libraries() -> None:
    """Keep the console readable: Lightning's per-Trainer banners and known-harmless warnings."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
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

    User errors (bad config, missing/corrupt files, diverged training) print one clear line and
    exit with status 2; the MLflow run, if one was started, is already marked FAILED.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_libraries()
    try:
        cfg = load_config(sys.argv[1:] if argv is None else argv)
        fix_threads(cfg.trainer.get("threads"))  # never follows other processes: same numbers
        run(cfg)  # prints its own summary line; evaluate's says where the report and run are
    except GraftlabError as err:
        print(f"error in stage {stage}: {err}", file=sys.stderr)
        sys.exit(2)
