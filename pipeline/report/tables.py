"""Rows of the CSV tables dvc.yaml's plots read, shared by the inductive and transductive
evaluate (DVC has no per-setting plots, and a table it names that evaluate did not write fails
`dvc plots show` for the workspace)."""

from __future__ import annotations

from collections.abc import Sequence


def confusion_rows(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> list[dict]:
    """One ``{actual, predicted}`` row per test image (``confusion``: rows are true classes),
    by the dataset's class names: what DVC's confusion template counts."""
    return [
        {"actual": classes[i], "predicted": classes[j]}
        for i, row in enumerate(confusion)
        for j, n in enumerate(row)
        for _ in range(n)
    ]


def unmeasured_depth(k: int) -> list[dict]:
    """The freeze-depth table of a run that did not measure the curve: one point, no values,
    drawn as an empty plot."""
    return [{"k": k, "freeze": None, "anb": None, "anb_plus": None}]


def unmeasured_labels(labels_per_class: int) -> list[dict]:
    """The label-efficiency table of a run that did not measure the curve (see
    :func:`unmeasured_depth`)."""
    return [{"labels_per_class": labels_per_class, "transfer": None, "scratch": None}]
