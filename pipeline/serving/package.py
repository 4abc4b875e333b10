"""Write a model folder MLflow can load as a pyfunc: MLmodel, the code entry point, the
safetensors weights and the JSON spec (what rebuilds the network and preprocesses inputs)."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pipeline.serving.classifier import COLUMN

CODE = Path(__file__).with_name("model_code.py")
# what loading the model imports; pinned to the versions that trained it (local tags dropped)
_LOCAL = re.compile(r"\+.*$")
REQUIREMENTS = ("torch", "torchvision", "timm", "safetensors", "pillow", "numpy", "pandas")


def requirements() -> list[str]:
    out = []
    for name in ("mlflow", *REQUIREMENTS):
        try:
            out.append(f"{name}=={_LOCAL.sub('', version(name))}")
        except PackageNotFoundError:
            out.append(name)
    return out


@contextmanager
def _quiet_copies() -> Iterator[None]:
    """No artifact progress bars while saving (one per artifact, per model, in stage logs)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            del os.environ[key]
        else:
            os.environ[key] = old


def save_pyfunc(folder: Path, weights: Path, spec: dict) -> None:
    """Save a pyfunc model into the new folder ``folder`` (it must not exist or be empty).

    Args:
        folder: Where the model goes.
        weights: The safetensors weights file (copied into the model's artifacts).
        spec: The model spec (model config, classes, input shape, normalisation).
    """
    import tempfile

    import mlflow.pyfunc
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec("binary", COLUMN)]),
        outputs=Schema([ColSpec("string", "class"), ColSpec("double", "probability")]),
    )
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "model.json"
        spec_path.write_text(json.dumps(spec, indent=2))
        with warnings.catch_warnings(), _quiet_copies():
            # "no input example": one would load and run the model here
            warnings.filterwarnings("ignore", message=r".*input example was not provided.*")
            mlflow.pyfunc.save_model(
                path=str(folder),
                python_model=str(CODE),
                artifacts={"weights": str(weights), "spec": str(spec_path)},
                signature=signature,
                pip_requirements=requirements(),
            )
