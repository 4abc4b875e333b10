"""The evaluation report: typed results (:mod:`pipeline.report.summary`) in; markdown, PNG figures
and the tables behind `dvc plots` out."""

from __future__ import annotations

from pathlib import Path

from pipeline.jsonfile import write_json
from pipeline.report.summary import Evaluation
from pipeline.report.tables import confusion_rows, unmeasured_depth, unmeasured_labels
from pipeline.transfer.curves import band


def write_report(ev: Evaluation, folder: Path) -> None:
    """``report.md``, its PNG figures, ``report.html`` (both in one file) and ``summary.json`` into
    ``folder``."""
    from pipeline.report import plots
    from pipeline.report.html import write_html
    from pipeline.report.markdown import render_report

    folder.mkdir(parents=True, exist_ok=True)
    c = ev.confidence
    if ev.freeze_depth:
        scratch = ev.arms[ev.baseline].acc.mean
        plots.plot_freeze_depth(ev.freeze_depth, scratch, folder / "freeze_depth.png", c)
    if ev.label_efficiency:
        names = (ev.primary, ev.baseline)
        plots.plot_label_efficiency(ev.label_efficiency, folder / "label_efficiency.png", c, names)
    plots.plot_arms(ev.arms, folder / "arms.png", c)
    plots.plot_confusion(ev.confusion, ev.classes, folder / "confusion.png")
    (folder / "report.md").write_text(render_report(ev))
    write_html(folder)
    write_json(folder / "summary.json", ev.to_dict())


def _with_band(row: dict, name: str, values: tuple, confidence: float) -> dict:
    iv = band(values, confidence)
    return row | {name: iv.mean, f"{name}_low": iv.low, f"{name}_high": iv.high}


def plot_tables(ev: Evaluation) -> dict[str, list[dict]]:
    """The tables `dvc plots show` draws, by file name: means with their interval bounds. A curve
    switched off (``evaluate.curves.*``) is one point with no values, drawn as an empty plot: a
    table dvc.yaml names and evaluate did not write fails `dvc plots show` for the workspace."""
    c = ev.confidence
    depth = []
    for r in ev.freeze_depth or []:
        row = {"k": r.k}
        for name in ("freeze", "anb", "anb_plus"):
            row = _with_band(row, name, getattr(r, name), c)
        depth.append(row)
    labels = []
    for r in ev.label_efficiency or []:
        row = _with_band({"labels_per_class": r.labels_per_class}, "transfer", r.transfer, c)
        labels.append(_with_band(row, "scratch", r.scratch, c))
    tables = {
        "arms.csv": [
            {
                "arm": n,
                "test_acc": a.acc.mean,
                "test_acc_low": a.acc.low,
                "test_acc_high": a.acc.high,
            }
            for n, a in ev.arms.items()
        ],
        "freeze_depth.csv": depth or unmeasured_depth(0),
        "label_efficiency.csv": labels or unmeasured_labels(ev.labels_per_class),
        "confusion.csv": confusion_rows(ev.confusion, ev.classes),
    }
    return {name: rows for name, rows in tables.items() if rows}
