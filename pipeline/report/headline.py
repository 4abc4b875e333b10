"""Which evaluation metrics lead: a small headline file for `dvc metrics show` / `dvc exp show`,
everything else in a details file.

`dvc metrics show` puts every declared metrics file into one table whose columns are sorted by
name, so a 47-key file buried the verdict; `dvc exp show` orders columns by file. The headline
file is the only metrics file the pipeline declares, keys in reading order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pipeline.jsonfile import write_json

# The answer first: how much transfer helped, how sure, and was it negative.
HEADLINE = (
    "transfer_gain",
    "transfer_gain_ci_low",
    "transfer_gain_ci_high",
    "negative_transfer",
    "inconclusive",
    "ntg",
    "transfer.test_acc",
    "scratch.test_acc",
    "recommended_k",
    "seeds",
)


def split_metrics(flat: Mapping[str, object], keys: Sequence[str] = HEADLINE) -> tuple[dict, dict]:
    """``(headline, details)``: the ``keys`` present in ``flat`` in that order, and the
    remaining keys in their original order."""
    headline = {k: flat[k] for k in keys if k in flat}
    details = {k: v for k, v in flat.items() if k not in headline}
    return headline, details


def write_metrics(folder: Path, flat: Mapping[str, object], keys: Sequence[str] = HEADLINE) -> dict:
    """``metrics.json`` (the headline ``keys``, default :data:`HEADLINE`, in that order) and
    ``details.json`` (the rest, sorted) into ``folder``; return the headline."""
    headline, details = split_metrics(flat, keys)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "metrics.json", headline, sort_keys=False)
    write_json(folder / "details.json", details)
    return headline
