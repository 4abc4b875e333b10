"""Validator scores after every epoch of a fit, logged as ``val/<name>``.

The scores go through ``LightningModule.log``, so they reach the run's logger (MLflow) per epoch,
the fit's history, the best-epoch keeper (``FitSettings.monitor = "val/<name>"``: validator-chosen
stopping) and Optuna's pruning callback alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import lightning.pytorch as L
import numpy as np
import torch

from pipeline.errors import ConfigError
from pipeline.models.predict import inference_batch
from pipeline.selection.base import EpochOutputs, Validator

Tensors = tuple[torch.Tensor, torch.Tensor | None]


def check_validators(
    validators: Mapping[str, Validator], has_source: bool, key: str = "setting.validators"
) -> None:
    """A validator that reads labelled source data is a named error when there is none."""
    for name, v in validators.items():
        if not isinstance(v, Validator):
            raise ConfigError(f"{key}.{name}._target_", type(v).__name__, "a Validator")
        if v.needs_source and not has_source:
            raise ConfigError(
                f"{key}.{name}",
                type(v).__name__,
                "a validator that reads no source data (this run has no labelled source "
                "validation split; give source data or drop it)",
            )


class ValidatorScores(L.Callback):
    """Scores the model with every validator at the end of each validation epoch.

    The model is run on raw inputs (from the first group), so the scores do not depend on
    frozen-prefix caching. Optionally records the predicted class of ``probe`` inputs per epoch
    (e.g. the target test inputs, whose labels only the evaluate stage reads).

    Args:
        validators: Validators by name.
        target: Unlabelled target inputs.
        source_val: Labelled source validation split (x, y), or None.
        source_train: Source training inputs for deep embedded validation, or None.
        probe: Inputs whose per-epoch predictions are recorded, or None.
        batch_size: Rows per forward pass (default
            :func:`~pipeline.models.predict.inference_batch` for the training device).
    """

    def __init__(
        self,
        validators: Mapping[str, Validator],
        target: torch.Tensor,
        source_val: Tensors | None = None,
        source_train: torch.Tensor | None = None,
        probe: torch.Tensor | None = None,
        batch_size: int | None = None,
    ) -> None:
        check_validators(validators, source_val is not None)
        self.validators = dict(validators)
        self.target, self.source_val, self.source_train = target, source_val, source_train
        self.probe, self.batch_size = probe, batch_size
        self.rows: list[dict[str, float]] = []
        self.predictions: list[np.ndarray] = []

    def _run(self, model: torch.nn.Module, x: torch.Tensor, device: torch.device):
        size = self.batch_size or inference_batch(device)
        feats = [model.forward_features(b.to(device)) for b in x.split(size)]
        f = torch.cat(feats)
        return model.head(f), f

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        model, device = module.model, module.device
        with torch.no_grad():
            t_logits, t_feats = self._run(model, self.target, device)
            s_logits = s_feats = s_y = s_train = None
            if self.source_val is not None:
                s_logits, s_feats = self._run(model, self.source_val[0], device)
                s_y = self.source_val[1].to(device)
            if self.source_train is not None:
                s_train = self._run(model, self.source_train, device)[1]
            out = EpochOutputs(t_logits, t_feats, s_logits, s_feats, s_y, s_train)
            scores = {name: float(v(out)) for name, v in self.validators.items()}
            if self.probe is not None:
                logits = self._run(model, self.probe, device)[0]
                self.predictions.append(logits.argmax(1).cpu().numpy().astype(np.int16))
        for name, value in scores.items():
            # a NaN score (e.g. a degenerate domain classifier) must never win a selection
            module.log(f"val/{name}", value if math.isfinite(value) else -math.inf)
        self.rows.append(scores)
