"""Log dataset splits as MLflow run inputs, identified by their full sha256 digest.

MLflow's own dataset digest hashes at most 10,000 rows; ours is the sha256 of the exact arrays
(the same value as the data card and DVC's content hash chain), so a run's inputs identify its
data. The digest column holds 36 characters: it shows the first 32 hex digits, and the full
digest is the input tag ``sha256``.
"""

from __future__ import annotations

import warnings
from pathlib import Path


def log_split(
    dataset: str,
    split: str,
    sha256: str,
    path: Path,
    context: str,
    size: int | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    """Record split ``split`` of ``dataset`` (stored at ``path``) as an input of the active run,
    with extra input ``tags`` (e.g. ``labelled: false``)."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local files
        warnings.simplefilter("ignore")
        source = resolve_dataset_source(str(path.resolve()))
    ds = MetaDataset(source, name=f"{dataset}/{split}", digest=sha256[:32])
    tags = {"sha256": sha256, "split": split, **(tags or {})}
    if size is not None:
        tags["rows"] = str(size)
    mlflow.log_input(ds, context=context, tags=tags)


def log_card_inputs(card: dict, path: Path, contexts: dict[str, str]) -> None:
    """Log the splits named in ``contexts`` (split -> context) of a data card."""
    for split, context in contexts.items():
        info = card["splits"][split]
        log_split(card["name"], split, info["sha256"], path, context, info["size"])
