"""Serve a trained model: an MLflow pyfunc (models-from-code, no pickle) that takes image files
and returns class names and probabilities."""
