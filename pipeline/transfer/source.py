"""The pretrained source model as the transfer stages see it: weights, spec and run ids."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from pipeline.errors import CheckpointError
from pipeline.models.weights import load_state_dict, state_digest

WEIGHTS, SPEC, IDS = "weights.safetensors", "model.json", "mlflow.json"


@dataclass(frozen=True)
class SourceModel:
    """A source network's weights, how to rebuild it, and the MLflow ids that made it.

    Attributes:
        path: The weights file.
        state: Its state dict (loaded without pickle).
        spec: Model config, classes, data digest (``model.json``).
        ids: MLflow run and LoggedModel ids (``mlflow.json``).
    """

    path: Path
    state: dict[str, torch.Tensor] = field(repr=False)
    spec: dict = field(default_factory=dict)
    ids: dict = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> SourceModel:
        """Read the weights, ``model.json`` and ``mlflow.json`` the pretrain stage wrote."""
        path = folder / WEIGHTS
        state = load_state_dict(path)
        docs = {}
        for name in (SPEC, IDS):
            try:
                docs[name] = json.loads((folder / name).read_text())
            except (OSError, ValueError) as err:
                raise CheckpointError(folder / name, f"unreadable ({err}); run pretrain") from err
        return cls(path, state, docs[SPEC], docs[IDS])

    @cached_property
    def weights_id(self) -> str:
        """Content digest of the source weights (same weights, same id, on any machine)."""
        return state_digest(self.state)
