"""Model weights without pickle: safetensors, or ``torch.load(weights_only=True)``."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from pipeline.errors import CheckpointError

# The metadata is one header entry holding sorted JSON: safetensors writes the header's metadata
# in hash-map order, which differs from run to run (huggingface/safetensors#584), so a file with
# several entries got different bytes for the same weights, and DVC a different hash for it.
METADATA_KEY = "graftlab"


def save_weights(model: nn.Module, path: Path, metadata: dict | None = None) -> None:
    """Write ``model``'s state dict to a ``.safetensors`` file with JSON-able metadata; the same
    weights and metadata give the same bytes."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {METADATA_KEY: json.dumps(metadata or {}, sort_keys=True)}
    save_file(state, str(path), metadata=meta)


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and values (not of a file's bytes, which
    also hold metadata and, in files from other tools, metadata in run-dependent order)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def read_metadata(path: Path) -> dict:
    """The metadata stored by :func:`save_weights`."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (OSError, SafetensorError) as err:
        raise CheckpointError(path, f"not a readable safetensors file ({err})") from err
    if METADATA_KEY in meta:
        return json.loads(meta[METADATA_KEY])
    return {k: json.loads(v) for k, v in meta.items()}  # written before METADATA_KEY


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` or a torch file, never unpickling arbitrary code.

    Lightning checkpoints (a dict with ``state_dict``) are unwrapped.
    """
    if not path.is_file():
        raise CheckpointError(path, "file not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (
        OSError,
        RuntimeError,
        ValueError,
        SafetensorError,
        EOFError,
        pickle.UnpicklingError,
    ) as err:
        if isinstance(err, pickle.UnpicklingError):
            # torch's text advises weights_only=False: never for a file that fails this check
            why = "torch.load(weights_only=True) refused it; it is not unpickled any other way"
        else:
            why = str(err).strip().splitlines()[0] if str(err).strip() else ""
        detail = f"{type(err).__name__}: {why}" if why else type(err).__name__
        raise CheckpointError(path, f"corrupt or unreadable checkpoint ({detail})") from err
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(path, "does not hold a state dict of tensors")
    return obj


def load_into(
    model: nn.Module, state: dict[str, torch.Tensor], path: Path, prefix: str = ""
) -> None:
    """Copy the tensors under ``prefix`` into ``model``, requiring matching names and shapes."""
    own = model.state_dict()
    wanted = {k: v for k, v in own.items() if k.startswith(prefix)}
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise CheckpointError(
            path,
            f"missing {len(missing)} tensors, e.g. {missing[:3]}; "
            "was it saved from a different model config?",
        )
    for key, ref in wanted.items():
        if state[key].shape != ref.shape:
            raise CheckpointError(
                path,
                f"{key} has shape {tuple(state[key].shape)}, the model needs "
                f"{tuple(ref.shape)} (different model config or number of classes?)",
            )
    model.load_state_dict({**own, **{k: state[k] for k in wanted}})


def load_model(factory: Callable[[int], nn.Module], path: Path, num_classes: int) -> nn.Module:
    """``factory(num_classes)`` with the weights stored at ``path``, in eval mode and in
    channels-last layout (what training uses: its convolutions and pooling ran up to 1.9x
    faster on it on CPUs, see :func:`pipeline.transfer.fit.fit_ensemble`)."""
    model = factory(num_classes)
    load_into(model, load_state_dict(path), path)
    return model.to(memory_format=torch.channels_last).eval()
