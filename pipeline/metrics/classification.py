"""Test-split classification metrics (torchmetrics): accuracy, macro-F1, per-class accuracy,
confusion matrix."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
)


def accuracy(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> float:
    """Micro accuracy of ``logits`` (N, C) against labels ``y`` (N,)."""
    return float(multiclass_accuracy(logits.argmax(dim=1), y, num_classes, average="micro"))


def classification_metrics(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> dict:
    """Scores of ``logits`` (N, C) against labels ``y`` (N,).

    Returns:
        ``acc`` (micro accuracy), ``macro_f1``, ``per_class_acc`` (list of C) and ``confusion``
        (C x C list, rows = true class, columns = predicted).
    """
    preds = logits.argmax(dim=1)
    kw = {"num_classes": num_classes}
    return {
        "acc": accuracy(logits, y, num_classes),
        "macro_f1": float(multiclass_f1_score(preds, y, average="macro", **kw)),
        "per_class_acc": multiclass_accuracy(preds, y, average=None, **kw).tolist(),
        "confusion": multiclass_confusion_matrix(preds, y, **kw).tolist(),
    }


def model_metrics(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int
) -> dict:
    """:func:`classification_metrics` of ``model`` (in eval mode, batched) on ``(x, y)``."""
    from pipeline.models.predict import predict_logits

    return classification_metrics(predict_logits(model, x), y, num_classes)
