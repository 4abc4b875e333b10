"""Models-from-code entry point MLflow runs to load a Graftlab model (no pickle)."""

import mlflow

from pipeline.serving.classifier import ImageClassifier

mlflow.models.set_model(ImageClassifier())
