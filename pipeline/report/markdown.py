"""The evaluation report as markdown: a one-paragraph verdict, then tables, curves and scores."""

from __future__ import annotations

import math

from pipeline.report.summary import Evaluation
from pipeline.transfer.curves import mean

VERDICT_TEXT = {
    "positive": "no negative transfer (the gap's interval lies below 0: the source helps)",
    "negative": "**negative transfer** (the gap's interval lies above 0: the source hurts)",
    "inconclusive": "inconclusive (the interval of the negative transfer gap includes 0)",
}


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def _pts(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:+.1f}"


def _num(x: float, fmt: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def verdict_paragraph(s: Evaluation) -> str:
    """The opening paragraph, e.g. "Transfer from A to B: +N.N points over scratch ..."."""
    g = s.gain
    parts = [
        f"Transfer from {s.source} to {s.target} ({s.primary} vs {s.baseline}): "
        f"{_pts(g.mean)} points over {s.baseline} at {s.labels_per_class} labels per "
        f"class ({int(100 * s.confidence)}% CI {_pts(g.low)}..{_pts(g.high)}, "
        f"{s.seeds} seeds); {VERDICT_TEXT[s.verdict]}"
    ]
    if s.best_depth is not None:
        parts.append(f"best frozen depth k={s.best_depth} (freeze-depth curve)")
    if s.tuned_freeze_groups is not None:
        parts.append(f"tuned k={s.tuned_freeze_groups}")
    ls = s.labels_saved or {}
    if ls.get("scratch_equivalent") is not None and math.isfinite(ls["scratch_equivalent"]):
        parts.append(
            f"scratch needs ~{ls['scratch_equivalent']:.1f} labels per class to match "
            f"it (saves ~{ls['scratch_equivalent'] - s.labels_per_class:.1f})"
        )
    if ls.get("saved") is not None and math.isfinite(ls["saved"]):
        parts.append(f"saves ~{ls['saved']:.0f} labels per class to reach scratch's best accuracy")
    elif ls:
        parts.append("transfer does not reach scratch's best accuracy on the label curve")
    return "; ".join(parts) + "."


def _arms_table(s: Evaluation) -> list[str]:
    ci = f"{int(100 * s.confidence)}% CI"
    lines = [
        f"| arm | copied groups | frozen groups | test acc % | {ci} | macro-F1 | NTG (pts) "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, a in s.arms.items():
        ntg = s.ntg.get(name)
        ntg_txt = (
            f"{_pts(ntg.mean)} ({_pts(ntg.ci_low)}..{_pts(ntg.ci_high)})" if ntg else "baseline"
        )
        lines.append(
            f"| {name} | {a.init_groups} | {a.freeze_groups} | {_pct(a.acc.mean)} | "
            f"{_pct(a.acc.low)}..{_pct(a.acc.high)} | {_num(a.macro_f1)} | {ntg_txt} | "
            f"{ntg.verdict if ntg else ''} |"
        )
    return lines


def render_report(s: Evaluation) -> str:
    """Markdown for an evaluation summary built by the evaluate stage."""
    out = ["# Graftlab evaluation report", "", verdict_paragraph(s), ""]
    out += [
        "## Arms on the target test split",
        "",
        f"Mean over {s.seeds} paired seeds (same labelled subset and init per seed). NTG = "
        "test error with the source minus without it (Wang et al., CVPR 2019); > 0 means "
        "negative transfer.",
        "",
        *_arms_table(s),
        "",
        "![arms](arms.png)",
        "",
    ]
    if s.compute_saved:
        c = s.compute_saved
        out += [
            "## Compute saved",
            "",
            f"Epochs / seconds to reach {s.baseline}'s best validation accuracy "
            f"({_pct(c['goal'])}%), mean over seeds: {s.primary} "
            f"{_num(c['transfer_epochs'], '.1f')} epochs / {_num(c['transfer_seconds'], '.1f')} s,"
            f" {s.baseline} {_num(c['scratch_epochs'], '.1f')} epochs / "
            f"{_num(c['scratch_seconds'], '.1f')} s.",
            "",
        ]
    if s.freeze_depth:
        out += [
            "## Freeze-depth curve (Yosinski et al., NeurIPS 2014)",
            "",
            "Copy the first k layer groups from the source; either keep them frozen and train "
            "the rest from random init (AnB), or fine-tune everything (AnB+).",
            "",
            "| k | frozen (AnB) % | fine-tuned (AnB+) % |",
            "|---|---|---|",
        ]
        out += [
            f"| {r.k} | {_pct(mean(r.frozen))} | {_pct(mean(r.finetuned))} |"
            for r in s.freeze_depth
        ]
        out += ["", "![freeze depth](freeze_depth.png)", ""]
    if s.label_efficiency:
        ls = s.labels_saved or {}
        out += [
            "## Label efficiency",
            "",
            "| labels per class | transfer % | scratch % |",
            "|---|---|---|",
        ]
        out += [
            f"| {r.labels_per_class} | {_pct(mean(r.transfer))} | {_pct(mean(r.scratch))} |"
            for r in s.label_efficiency
        ]
        out += [
            "",
            f"Scratch's best accuracy on this curve is {_pct(ls.get('goal'))}% "
            f"(at {_num(ls.get('scratch_labels'), '.0f')} labels per class); transfer reaches "
            f"it at {_num(ls.get('transfer_labels'), '.1f')} labels per class.",
            "",
            "![label efficiency](label_efficiency.png)",
            "",
        ]
    if s.scores:
        out += [
            "## Transferability and domain similarity (before target training)",
            "",
            "| score | value | reads |",
            "|---|---|---|",
        ]
        out += [f"| {k} | {_num(v.value, '.4f')} | {v.reads} |" for k, v in s.scores.items()]
        if s.ranking:
            out += [
                "",
                "Kendall's tau between each score computed on the features after k frozen "
                "groups and the realised frozen-transfer accuracy at k:",
                "",
                "| score | tau |",
                "|---|---|",
            ]
            out += [f"| {k} | {_num(v)} |" for k, v in s.ranking.items()]
        out.append("")
    out += [
        "## Confusion matrix",
        "",
        f"{s.primary}, first seed.",
        "",
        "![confusion](confusion.png)",
        "",
    ]
    return "\n".join(out)
