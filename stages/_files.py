"""Where the stages read and write (declared once), and the file formats they share.

The folders come from the ``paths`` config section; ``dvc.yaml`` interpolates the same keys, so a
stage's folder is named in exactly one place. What lies inside a folder is its stage's business,
and the files other stages read are named here.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from pipeline.errors import GraftlabError
from pipeline.jsonfile import write_json as write_json  # the stages' JSON writer

# Files other stages read, relative to their stage's folder.
SOURCE_MODEL, BEST, INDEX, HISTORY = "model", "best.yaml", "models/index.json", "history.csv"
PREDICTIONS = "models/predictions.safetensors"  # transductive: per-epoch test-input predictions
# The prepare run's id sits beside the domain folders, not in them: a new run id in a domain
# folder would change its hash and re-run every stage downstream of data that did not change.
PREPARE_IDS = "mlflow.json"


@dataclass(frozen=True)
class Layout:
    """Every stage's output folder and the files that cross stage boundaries."""

    prepare: Path
    pretrain: Path
    tune: Path
    transfer: Path
    evaluate: Path

    @classmethod
    def of(cls, cfg: DictConfig) -> Layout:
        return cls(**{stage: Path(cfg.paths[stage]) for stage in cls.__dataclass_fields__})

    def domain(self, role: str) -> Path:
        """Prepared data of ``role`` (source or target)."""
        return self.prepare / role

    @property
    def prepare_ids(self) -> Path:
        """The prepare run's ids and the digests of the data it wrote."""
        return self.prepare / PREPARE_IDS

    @property
    def source_model(self) -> Path:
        return self.pretrain / SOURCE_MODEL

    @property
    def best(self) -> Path:
        return self.tune / BEST

    @property
    def index(self) -> Path:
        return self.transfer / INDEX

    @property
    def history(self) -> Path:
        return self.transfer / HISTORY


def read_ids(path: Path) -> dict:
    """MLflow ids a stage left (for links only: ``{}`` when missing or unreadable)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise GraftlabError(f"cannot read {path} ({err}); run the stage that writes it") from err


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts as CSV, columns in first-seen order."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV written by :func:`write_csv`, numbers as floats."""
    with path.open() as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(v: str) -> object:
    try:
        return float(v)
    except ValueError:
        return v
