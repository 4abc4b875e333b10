"""JSON files Graftlab writes: strict JSON, where an undefined number is ``null``.

Python's ``json`` writes a float NaN or infinity as the bare words ``NaN`` / ``Infinity``, which
are not JSON (RFC 8259): strict parsers, ``jq`` and browsers refuse the file. Every
``metrics.json``, ``summary.json`` and ``ranking.json`` goes through :func:`write_json`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path


def json_safe(obj: object) -> object:
    """``obj`` with every non-finite float replaced by ``None``, tuples as lists and mapping keys
    as strings."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def json_text(obj: object, sort_keys: bool = True) -> str:
    """Strict JSON of ``obj`` (see :func:`json_safe`), indented by 2, ending in a newline."""
    return json.dumps(json_safe(obj), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"


def write_json(path: Path, obj: object, sort_keys: bool = True) -> None:
    """Write :func:`json_text` of ``obj`` to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_text(obj, sort_keys))
