"""Log dataset splits as MLflow run inputs, identified by their full sha256 digest.

MLflow's own dataset digest hashes at most 10,000 rows; ours is the sha256 of the exact arrays
(the same value as the data card and DVC's content hash chain), so a run's inputs identify its
data. The digest column holds 36 characters: it shows the first 32 hex digits; the full digest is
in the dataset's profile (shown in the UI's dataset panel) and in the input tag ``sha256``.

MLflow keeps one record per (experiment, name, digest): the source path logged first stays. So the
path logged is the final one (never a stage's temporary folder), resolved against the repository
root (``DVC_ROOT`` for queued experiments, which run in temporary copies).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from mlflow.data.meta_dataset import MetaDataset

from pipeline.tracking.store import repo_root


class SplitDataset(MetaDataset):
    """A metadata-only MLflow dataset whose profile carries the split's full sha256 and size."""

    def __init__(self, source: object, name: str, sha256: str, rows: int | None) -> None:
        super().__init__(source, name=name, digest=sha256[:32])
        self._profile = {"sha256": sha256, **({"rows": rows} if rows is not None else {})}

    @property
    def profile(self) -> dict:
        return self._profile

    def to_dict(self) -> dict[str, str]:
        return {**super().to_dict(), "profile": json.dumps(self._profile)}


def split_dataset(
    dataset: str, split: str, sha256: str, path: Path, size: int | None = None
) -> SplitDataset:
    """The MLflow dataset of split ``split`` of ``dataset`` stored at ``path``."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    where = path if path.is_absolute() else repo_root(Path.cwd()) / path
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local files
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str(where.resolve()))
    return SplitDataset(source, f"{dataset}/{split}", sha256, size)


def log_split(
    dataset: str,
    split: str,
    sha256: str,
    path: Path,
    context: str,
    size: int | None = None,
    tags: dict[str, str] | None = None,
) -> SplitDataset:
    """Record split ``split`` of ``dataset`` (stored at ``path``) as an input of the active run,
    with extra input ``tags`` (e.g. ``labelled: false``); return the logged dataset."""
    import mlflow

    ds = split_dataset(dataset, split, sha256, path, size)
    tags = {"sha256": sha256, "split": split, **(tags or {})}
    if size is not None:
        tags["rows"] = str(size)
    mlflow.log_input(ds, context=context, tags=tags)
    return ds


def log_card_inputs(card: dict, path: Path, contexts: dict[str, str]) -> None:
    """Log the splits named in ``contexts`` (split -> context) of a data card."""
    for split, context in contexts.items():
        info = card["splits"][split]
        log_split(card["name"], split, info["sha256"], path, context, info["size"])
