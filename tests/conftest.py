"""Shared fixtures: the real conf/ composed with tiny overrides, and a prepared tiny workspace.

Tests never download anything and never write into the repository: stages run with a temporary
working directory and a session-wide SQLite MLflow store.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from stages._shell import compose_conf, quiet_libraries

REPO = Path(__file__).resolve().parent.parent

# Small enough for seconds per stage on 2 CPU cores, big enough that transfer visibly helps.
TINY = [
    "data.source.n_train=600",
    "data.source.n_val=100",
    "pretrain.epochs=2",
    "pretrain.batch_size=64",
    "transfer.epochs=6",
    "transfer.seeds=2",
    "tune.n_trials=3",
    "tune.subsets=2",
    "tune.epochs=3",
    "tune.sampler.n_startup_trials=2",
    "evaluate.curves.label_efficiency.labels_per_class=[1,2]",
    "evaluate.curves.freeze_depth.seeds=1",
    "evaluate.scores.max_samples=120",
    "evaluate.scores.mmd_permutations=20",
    "trainer.enable_progress_bar=false",
]


# scratch's learning rates and weight decay at 1e6: its weights grow 1e12-fold a step and the loss
# overflows in the first epochs (a diverging run)
DIVERGING_SCRATCH = (
    "transfer.arms.scratch.head_lr=1e6",
    "transfer.arms.scratch.backbone_lr=1e6",
    "transfer.arms.scratch.weight_decay=1e6",
)


def compose(*overrides: str, tiny: bool = True) -> DictConfig:
    """The real conf/ composed like DVC does, with the tiny overrides and then ``overrides``."""
    return OmegaConf.create(compose_conf([*(TINY if tiny else []), *overrides]))


def decode_entries(folder: Path | str) -> list[Path]:
    """The decode cache's entries (one folder per decoded dataset; its README is not one)."""
    return [p for p in Path(folder).glob("*") if p.is_dir()]


def dvc_plots(cfg: DictConfig) -> list[tuple[str, dict, Path, str]]:
    """``(title, definition, file, column)`` of every table dvc.yaml's plots read."""
    import yaml

    found = []
    for entry in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]:
        if isinstance(entry, dict):
            ((title, spec),) = entry.items()
            for path, column in spec["y"].items():
                for key, value in cfg.paths.items():
                    path = path.replace(f"${{paths.{key}}}", str(value))
                found.append((title, spec, Path(path), column))
    return found


def write_params(folder: Path, cfg: DictConfig) -> None:
    (folder / "params.yaml").write_text(OmegaConf.to_yaml(cfg))


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite MLflow store for the whole session (creating one costs seconds)."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("DVC_ROOT", None)
    quiet_libraries()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return uri


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory the stages run in."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace where prepare and pretrain already ran on the tiny config (read-only)."""
    from stages import prepare, pretrain

    folder = tmp_path_factory.mktemp("pretrained")
    cfg = compose()
    old = Path.cwd()
    os.chdir(folder)
    try:
        write_params(folder, cfg)
        prepare.run(cfg)
        pretrain.run(cfg)
    finally:
        os.chdir(old)
    return folder


@pytest.fixture
def workspace(pretrained: Path, workdir: Path) -> Path:
    """A private copy of the pretrained workspace as the working directory."""
    shutil.copytree(pretrained / "outputs", workdir / "outputs")
    shutil.copy(pretrained / "params.yaml", workdir / "params.yaml")
    return workdir
