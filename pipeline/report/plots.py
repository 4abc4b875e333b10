"""Report figures, written as PNG files with matplotlib's non-interactive Agg backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

from pipeline.metrics.comparison import ArmStats
from pipeline.transfer.curves import DepthPoint, LabelPoint, band

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _save(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _band(
    ax: plt.Axes,
    x: Sequence[float],
    per_seed: Sequence[Sequence[float]],
    confidence: float,
    style: str,
    label: str,
) -> None:
    """Mean line with a shaded interval over seeds (no band for a single seed)."""
    bands = [band(v, confidence) for v in per_seed]
    means = [b.mean for b in bands]
    (line,) = ax.plot(x, means, style, label=f"{label} (n={len(per_seed[0])} seeds)")
    if len(per_seed[0]) > 1:
        low = [max(b.low, 0.0) for b in bands]
        high = [min(b.high, 1.0) for b in bands]
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)


def plot_arms(arms: dict[str, ArmStats], path: Path, confidence: float = 0.95) -> None:
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
    ax.set_xlabel("arm")
    ax.set_ylabel("target test accuracy")
    ax.set_ylim(0, 1)
    n = len(next(iter(arms.values())).seeds)
    ax.set_title(f"Arms: mean and {round(100 * confidence)}% CI over {n} paired seeds")
    _save(fig, path)


def plot_freeze_depth(
    rows: Sequence[DepthPoint], scratch: float, path: Path, confidence: float = 0.95
) -> None:
    """Test accuracy against k: freeze k of all copied groups, AnB and AnB+, with bands."""
    k = [r.k for r in rows]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    _band(ax, k, [r.freeze for r in rows], confidence, "D-", "copy all, freeze k")
    _band(ax, k, [r.anb for r in rows], confidence, "o-", "copy k, frozen (AnB)")
    _band(ax, k, [r.anb_plus for r in rows], confidence, "s-", "copy k, fine-tune all (AnB+)")
    ax.axhline(scratch, color="gray", ls="--", label="scratch arm")
    ax.set_xlabel("k (layer groups)")
    ax.set_ylabel("target test accuracy")
    ax.set_xticks(k)
    ax.set_title(f"Freeze depth: mean and {round(100 * confidence)}% CI band")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_label_efficiency(
    rows: Sequence[LabelPoint], path: Path, confidence: float = 0.95, names: tuple = ()
) -> None:
    """Test accuracy against labels per class for transfer and scratch (log x), with bands."""
    x = [r.labels_per_class for r in rows]
    transfer, scratch = names or ("transfer", "scratch")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    _band(ax, x, [r.transfer for r in rows], confidence, "o-", transfer)
    _band(ax, x, [r.scratch for r in rows], confidence, "s-", scratch)
    ax.set_xscale("log")
    ax.set_xticks(x, [str(v) for v in x])
    ax.set_xlabel("labelled training images per class")
    ax.set_ylabel("target test accuracy")
    ax.set_title(f"Label efficiency: mean and {round(100 * confidence)}% CI band")
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path) -> None:
    """Confusion matrix heat map (rows: true class, columns: predicted)."""
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix (test split)")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7)
    _save(fig, path)
