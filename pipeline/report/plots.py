"""Report figures, written as PNG files with matplotlib's non-interactive Agg backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

from pipeline.metrics.comparison import ArmStats
from pipeline.transfer.curves import DepthPoint, LabelPoint, mean

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_arms(arms: dict[str, ArmStats], path: Path) -> None:
    """Bar chart of mean test accuracy per arm with its confidence interval."""
    names = list(arms)
    means = [arms[n].acc.mean for n in names]
    err = [
        [m - arms[n].acc.low for n, m in zip(names, means, strict=True)],
        [arms[n].acc.high - m for n, m in zip(names, means, strict=True)],
    ]
    err = [[e if e == e and e != float("inf") else 0 for e in side] for side in err]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(names, means, yerr=err, capsize=4, color="tab:blue")
    ax.set_ylabel("target test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("Arms (mean and CI over paired seeds)")
    _save(fig, path)


def plot_freeze_depth(rows: Sequence[DepthPoint], scratch: float, path: Path) -> None:
    """Test accuracy against the number k of copied groups, frozen vs fine-tuned (Yosinski)."""
    k = [r.k for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(k, [mean(r.frozen) for r in rows], "o-", label="copy k, frozen (AnB)")
    ax.plot(k, [mean(r.finetuned) for r in rows], "s-", label="copy k, fine-tune all (AnB+)")
    ax.axhline(scratch, color="gray", ls="--", label="scratch")
    ax.set_xlabel("k (layer groups copied from the source)")
    ax.set_ylabel("target test accuracy")
    ax.set_xticks(k)
    ax.legend()
    _save(fig, path)


def plot_label_efficiency(rows: Sequence[LabelPoint], path: Path) -> None:
    """Test accuracy against labels per class for transfer and scratch (log x axis)."""
    x = [r.labels_per_class for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, [mean(r.transfer) for r in rows], "o-", label="transfer")
    ax.plot(x, [mean(r.scratch) for r in rows], "s-", label="scratch")
    ax.set_xscale("log")
    ax.set_xlabel("labels per class")
    ax.set_ylabel("target test accuracy")
    ax.legend()
    _save(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path) -> None:
    """Confusion matrix heat map (rows: true class, columns: predicted)."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    _save(fig, path)
