"""Save and load a :class:`Domain` as one safetensors file plus a JSON data card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from pipeline.data.checks import check_domain
from pipeline.data.domain import Domain, Split
from pipeline.errors import DataError

ARRAYS, CARD = "arrays.safetensors", "card.json"


def save_domain(domain: Domain, folder: Path) -> dict:
    """Write ``arrays.safetensors`` and ``card.json`` into ``folder``; return the card."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, split in domain.splits.items():
        tensors[f"{name}.x"] = np.ascontiguousarray(split.x)
        if split.y is not None:
            tensors[f"{name}.y"] = np.ascontiguousarray(split.y)
    save_file(tensors, str(folder / ARRAYS))
    card = domain.card()
    (folder / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return card


def load_domain(folder: Path) -> Domain:
    """Read a domain written by :func:`save_domain` and check it against its card's digests."""
    try:
        card = json.loads((folder / CARD).read_text())
        tensors = load_file(str(folder / ARRAYS))
        splits = {
            name: Split(tensors[f"{name}.x"], tensors.get(f"{name}.y")) for name in card["splits"]
        }
        domain = Domain(
            card["name"],
            tuple(card["classes"]),
            splits,
            card["recipe"],
            card.get("modality", "image"),
        )
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as err:
        raise DataError(
            folder, f"cannot read prepared data ({type(err).__name__}: {err}); run prepare"
        ) from err
    if domain.card()["sha256"] != card["sha256"]:
        raise DataError(folder / ARRAYS, f"does not match the digest in {folder / CARD}")
    check_domain(domain, folder)  # prepared by an older version, or by hand
    return domain
