"""The pyfunc behind every Graftlab LoggedModel: image files in, class names and probabilities out.

Inputs are what a dataset holds on disk: encoded image files (PNG, JPEG, ...; bytes, or base64
text in a JSON request to ``mlflow models serve``), in a column ``image``. Each is converted
exactly as prepare converted the training images (:func:`pipeline.data.images.decode.to_array`:
8-bit modes to the model's channel count, bilinear resize to its input size), scaled to [0, 1]
and normalised with the statistics prepare used, which the model's spec records.

The network is rebuilt from the spec's model config (its ``_target_`` and arguments, as Hydra
would call it) and its safetensors weights; nothing is unpickled.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import io
import json

import mlflow.pyfunc
import numpy as np
import pandas as pd  # predict's type hints: MLflow reads them (a DataFrame: the signature's)

COLUMN = "image"


def build_network(spec: dict, weights_path: str) -> object:
    """The network a spec describes, with the weights at ``weights_path``, in eval mode."""
    from pathlib import Path

    from pipeline.models.weights import load_into, load_state_dict

    config = dict(spec["model"])
    module, _, name = config.pop("_target_").rpartition(".")
    factory = getattr(importlib.import_module(module), name)
    if "weights" in config:  # the weights travel with the model, not as the config's file
        config["load_weights"] = False
    model = factory(num_classes=spec["num_classes"], **config)
    load_into(model, load_state_dict(Path(weights_path)), Path(weights_path))
    return model.eval()


def _image_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as err:
            raise ValueError(f"'{COLUMN}' text must be base64-encoded image bytes") from err
    raise ValueError(f"'{COLUMN}' must hold image file bytes, got {type(value).__name__}")


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """Predicts class names and probabilities for encoded image files."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        with open(context.artifacts["spec"]) as f:
            self.spec = json.load(f)
        self.model = build_network(self.spec, context.artifacts["weights"])
        self.classes = list(self.spec["classes"])
        channels, size, _ = self.spec["input_shape"]
        self.channels, self.size = int(channels), int(size)
        norm = self.spec.get("normalize") or {}
        shape = (1, self.channels, 1, 1)
        self.mean = np.asarray(norm.get("mean", [0.0] * self.channels), np.float32).reshape(shape)
        self.std = np.asarray(norm.get("std", [1.0] * self.channels), np.float32).reshape(shape)

    def images(self, model_input: pd.DataFrame) -> np.ndarray:
        """Encoded images -> the float32 batch (N, C, S, S) the network was trained on."""
        from PIL import Image, UnidentifiedImageError

        from pipeline.data.images.decode import to_array

        if COLUMN not in model_input:
            raise ValueError(f"the input needs a column '{COLUMN}' of encoded image files")
        column = model_input[COLUMN]
        batch = []
        for i, value in enumerate(list(column)):
            try:
                with Image.open(io.BytesIO(_image_bytes(value))) as image:
                    image.load()
                    batch.append(to_array(image, self.channels, self.size))
            except (OSError, UnidentifiedImageError, ValueError) as err:
                raise ValueError(f"input row {i}: not a usable image ({err})") from err
        x = np.stack(batch).astype(np.float32) / 255
        return (x - self.mean) / self.std

    def predict(
        self, context: object, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        """Class name, its probability and every class's probability, one row per image."""
        import torch

        from pipeline.models.predict import predict_logits

        x = torch.from_numpy(self.images(model_input))
        probs = torch.softmax(predict_logits(self.model, x), dim=1).double().numpy()
        best = probs.argmax(axis=1)
        return pd.DataFrame(
            {
                "class": [self.classes[i] for i in best],
                "probability": probs[np.arange(len(best)), best],
                "probabilities": [dict(zip(self.classes, p.tolist(), strict=True)) for p in probs],
            }
        )
