"""The evaluation report: typed results (:mod:`pipeline.report.summary`) in; markdown, PNG figures
and the tables behind `dvc plots` out."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.report.summary import Evaluation
from pipeline.transfer.curves import mean


def write_report(ev: Evaluation, folder: Path) -> None:
    """``report.md``, its PNG figures and ``summary.json`` into ``folder``."""
    from pipeline.report import plots
    from pipeline.report.markdown import render_report

    folder.mkdir(parents=True, exist_ok=True)
    if ev.freeze_depth:
        plots.plot_freeze_depth(
            ev.freeze_depth, ev.arms[ev.baseline].acc.mean, folder / "freeze_depth.png"
        )
    if ev.label_efficiency:
        plots.plot_label_efficiency(ev.label_efficiency, folder / "label_efficiency.png")
    plots.plot_arms(ev.arms, folder / "arms.png")
    plots.plot_confusion(ev.confusion, ev.classes, folder / "confusion.png")
    (folder / "report.md").write_text(render_report(ev))
    (folder / "summary.json").write_text(json.dumps(ev.to_dict(), indent=2, sort_keys=True) + "\n")


def plot_tables(ev: Evaluation) -> dict[str, list[dict]]:
    """The tables `dvc plots show` draws, by file name (empty tables are left out)."""
    tables = {
        "arms.csv": [{"arm": n, "test_acc": a.acc.mean} for n, a in ev.arms.items()],
        "freeze_depth.csv": [
            {"k": r.k, "frozen": mean(r.frozen), "finetuned": mean(r.finetuned)}
            for r in ev.freeze_depth or []
        ],
        "label_efficiency.csv": [
            {
                "labels_per_class": r.labels_per_class,
                "transfer": mean(r.transfer),
                "scratch": mean(r.scratch),
            }
            for r in ev.label_efficiency or []
        ],
        "confusion.csv": [
            {"actual": ev.classes[i], "predicted": ev.classes[j]}  # the dataset's class names
            for i, row in enumerate(ev.confusion)
            for j, n in enumerate(row)
            for _ in range(n)
        ],
    }
    return {name: rows for name, rows in tables.items() if rows}
