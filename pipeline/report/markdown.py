"""The evaluation report as markdown: a one-paragraph verdict, then tables, curves and scores.

Every number in the first paragraph comes from the same paired seeds and carries its interval;
savings are stated only when every seed reached the goal and the interval excludes zero, so the
paragraph never argues with itself (an inconclusive verdict next to a claimed saving).
"""

from __future__ import annotations

import math

from pipeline.metrics.efficiency import PerSeed
from pipeline.metrics.intervals import Interval
from pipeline.report.summary import Evaluation
from pipeline.transfer.curves import mean

VERDICT_TEXT = {
    "positive": "the source helps (the negative transfer gap's interval lies below 0)",
    "negative": "**negative transfer**: the source hurts (the gap's interval lies above 0)",
    "inconclusive": "inconclusive: no benefit or harm is established (the interval of the "
    "negative transfer gap includes 0)",
}


def _pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"


def _pts(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:+.1f}"


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def _ci(iv: Interval, fmt=_pct) -> str:
    if not (math.isfinite(iv.low) and math.isfinite(iv.high)):
        return "one seed: no interval"
    return f"{fmt(iv.low)}..{fmt(iv.high)}"


def _level(s: Evaluation) -> str:
    return f"{round(100 * s.confidence)}% CI"


def recommendation_sentence(s: Evaluation) -> str:
    r = s.recommendation
    how = "chosen by the study on validation data" if r.tuned else "set in the config, not tuned"
    if r.k == 0:
        depth = f"fine-tuning all {r.groups} layer groups, none frozen ({how})"
    elif r.k >= r.groups:
        depth = f"freezing all {r.groups} layer groups, a linear probe ({how})"
    else:
        depth = f"freezing the first {r.k} of {r.groups} layer groups ({how})"
    acc = f"{_pct(r.accuracy.mean)}% test accuracy ({_level(s)} {_ci(r.accuracy)})"
    if s.verdict == "positive":
        text = f"Recommended: {depth}; {s.primary} reaches {acc}."
    elif s.verdict == "negative":
        tried = "the best transfer found was" if r.tuned else "the configured transfer was"
        text = f"Recommended: train from scratch; {tried} {depth}, {acc}."
    else:
        whose = "The study's" if r.tuned else "The configured"
        text = f"{whose} depth is {depth}, {acc}; no benefit over scratch is established."
    if r.same_as:
        text += (
            f" At k={r.k}, {s.primary} is the same model as {', '.join(r.same_as)} (trained once)."
        )
    if r.curve_best is None:
        return text
    curve = "The freeze-depth curve (test accuracy when freezing each k, same seeds and settings)"
    if r.curve_best == r.k:
        return f"{text} {curve} peaks at the same k."
    d = r.curve_difference
    diff = f"{_pts(d.mean)} points over k={r.k} ({_level(s)} {_ci(d, _pts)})"
    if r.curve_agrees:
        return f"{text} {curve} peaks at k={r.curve_best}, {diff}: no significant difference."
    unseen = (
        ", which the study (choosing on the small validation budget) did not see" if r.tuned else ""
    )
    return f"{text} {curve} disagrees: k={r.curve_best} is {diff} on test data{unseen}."


def _saving(s: Evaluation, per_seed: PerSeed | None, claim: str, none: str) -> str | None:
    if per_seed is None or not per_seed.values:
        return None
    n = len(per_seed.values)
    if not per_seed.all_reached:
        return none.format(missing=n - per_seed.reached, n=n)
    iv = per_seed.claim(s.confidence)
    if iv is None or iv.mean <= 0:
        return None  # no significant saving: nothing to claim in the verdict paragraph
    return claim.format(value=iv.mean, ci=_ci(iv, lambda x: f"{x:.1f}"), level=_level(s))


def verdict_paragraph(s: Evaluation) -> str:
    """The opening paragraph, e.g. "Transfer from A to B (...): +N.N points over scratch ..."."""
    g = s.gain
    parts = [
        f"Transfer from {s.source} to {s.target} ({s.primary} vs {s.baseline}, {s.budget}, "
        f"{len(s.seeds)} paired seeds): {_pts(g.mean)} points over {s.baseline} "
        f"({_level(s)} {_ci(g, _pts)}); {VERDICT_TEXT[s.verdict]}."
    ]
    if s.recommendation:
        parts.append(recommendation_sentence(s))
    if s.verdict == "positive":
        extra = None
        if s.scratch_equivalent is not None:
            gap = PerSeed(tuple(v - s.labels_per_class for v in s.scratch_equivalent.values))
            extra = _saving(
                s,
                gap,
                f"Scratch needs {{value:.1f}} more labels per class ({{level}} {{ci}}) to match "
                f"{s.primary} on the label curve.",
                f"Scratch does not reach {s.primary}'s accuracy within the label curve on "
                "{missing} of {n} seeds.",
            )
        compute = _saving(
            s,
            s.epochs_saved,
            f"{s.primary} reaches {s.baseline}'s best validation accuracy {{value:.1f}} epochs "
            "sooner ({level} {ci}).",
            f"{s.primary} does not reach {s.baseline}'s best validation accuracy on "
            "{missing} of {n} seeds.",
        )
        parts += [p for p in (extra, compute) if p]
    return " ".join(parts)


def _arms_table(s: Evaluation) -> list[str]:
    lines = [
        f"| arm | copied groups | frozen groups | test acc % | {_level(s)} | macro-F1 | "
        "NTG (pts) | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, a in s.arms.items():
        ntg = s.ntg.get(name)
        ntg_txt = (
            f"{_pts(ntg.mean)} ({_pts(ntg.ci_low)}..{_pts(ntg.ci_high)})" if ntg else "baseline"
        )
        lines.append(
            f"| {name} | {a.init_groups} | {a.freeze_groups} | {_pct(a.acc.mean)} | "
            f"{_ci(a.acc)} | {_num(a.macro_f1)} | {ntg_txt} | {ntg.verdict if ntg else ''} |"
        )
    return lines


def _seeds(s: Evaluation, n: int | None = None) -> str:
    seeds = s.seeds if n is None else s.seeds[:n]
    return f"seeds {', '.join(map(str, seeds))}"


def _settings(s: Evaluation) -> str:
    keys = ("head_lr", "backbone_lr", "lr_decay", "weight_decay", "epochs", "batch_size")
    return ", ".join(
        f"{k}={_num(s.settings[k], '.3g')}" for k in keys if s.settings.get(k) is not None
    )


def _depth_section(s: Evaluation) -> list[str]:
    rows, n = s.freeze_depth, len(s.freeze_depth[0].anb)
    out = [
        "## Freeze-depth curve (Yosinski et al., NeurIPS 2014)",
        "",
        f"Test accuracy over {n} paired seeds ({_seeds(s, n)}), mean and {_level(s)}, every point "
        f"trained with the {s.primary} arm's settings ({_settings(s)}). *Freeze k*: copy every "
        "source group and freeze the first k (k=0 fine-tunes all, k=G is a linear probe). "
        "*AnB*: copy the first k groups frozen, the rest from a random init; *AnB+*: copy k, "
        "fine-tune all.",
        "",
        "| k | freeze k % | AnB % | AnB+ % |",
        "|---|---|---|---|",
    ]
    from pipeline.transfer.curves import band

    for r in rows:
        cells = [band(v, s.confidence) for v in (r.freeze, r.anb, r.anb_plus)]
        out.append(f"| {r.k} | " + " | ".join(f"{_pct(c.mean)} ({_ci(c)})" for c in cells) + " |")
    return [*out, "", "![freeze depth](freeze_depth.png)", ""]


def _label_section(s: Evaluation) -> list[str]:
    rows, n = s.label_efficiency, len(s.label_efficiency[0].transfer)
    out = [
        "## Label efficiency",
        "",
        f"Test accuracy over {n} paired seeds ({_seeds(s, n)}) at each training budget (the "
        "validation budget stays the same)."
        + (
            f" Requested budgets {', '.join(map(str, s.label_budgets_capped))} exceed the "
            f"smallest target class and are drawn at {rows[-1].labels_per_class}, its size."
            if s.label_budgets_capped
            else ""
        ),
        "",
        f"| labels per class | {s.primary} % | {s.baseline} % |",
        "|---|---|---|",
    ]
    from pipeline.transfer.curves import band

    for r in rows:
        t, b = band(r.transfer, s.confidence), band(r.scratch, s.confidence)
        out.append(
            f"| {r.labels_per_class} | {_pct(t.mean)} ({_ci(t)}) | {_pct(b.mean)} ({_ci(b)}) |"
        )
    for label, per_seed in (
        ("Labels per class transfer saves to reach scratch's best on the curve", s.labels_saved),
        (
            f"Labels per class scratch needs to match {s.primary} at "
            f"{s.labels_per_class} (the first paragraph states it as labels more than "
            f"{s.labels_per_class})",
            s.scratch_equivalent,
        ),
    ):
        if per_seed is not None:
            out += ["", f"{label}: " + _per_seed_text(s, per_seed)]
    return [*out, "", "![label efficiency](label_efficiency.png)", ""]


def _per_seed_text(s: Evaluation, per_seed: PerSeed) -> str:
    values = ", ".join("not reached" if math.isnan(v) else f"{v:.1f}" for v in per_seed.values)
    iv = per_seed.interval(s.confidence)
    summary = (
        f"mean {iv.mean:.1f} ({_level(s)} {_ci(iv, lambda x: f'{x:.1f}')})"
        if iv
        else f"not reached on {len(per_seed.values) - per_seed.reached} of "
        f"{len(per_seed.values)} seeds, so no mean"
    )
    return f"{summary}; per seed: {values}."


def _scores_section(s: Evaluation) -> list[str]:
    out = [
        "## Transferability and domain similarity (before target training)",
        "",
        f"Label scores on each seed's labelled budget ({s.budget}; {_seeds(s)}), for the source "
        "model and for a random-init network of the same architecture (reference); the "
        "difference is what pretraining adds.",
        "",
        f"| score | source | reference (random init) | difference ({_level(s)}) | reads |",
        "|---|---|---|---|---|",
    ]
    for c in s.scores or []:
        out.append(
            f"| {c.name} | {_num(c.source.mean, '.4f')} | {_num(c.reference.mean, '.4f')} | "
            f"{_num(c.difference.mean, '+.4f')} ({_ci(c.difference, lambda x: _num(x, '+.4f'))}) "
            f"| {c.reads} |"
        )
    if s.domain:
        out += [
            "",
            "Domain scores between source and target images (unlabelled, equal-size samples), in "
            "the features of the source model and of the reference:",
            "",
            "| score | source features | reference features | reads |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {c.name} | {_num(c.source.mean, '.4f')} | {_num(c.reference.mean, '.4f')} | "
            f"{c.reads} |"
            for c in s.domain
        ]
    if s.ranking:
        out += [
            "",
            "Kendall's tau between each score's gain over the reference on the features after k "
            f"frozen groups and the realised freeze-k accuracy at k, with its "
            f"{round(100 * s.confidence)}% bootstrap interval over the curve's paired seeds:",
            "",
            "| score | tau | interval |",
            "|---|---|---|",
        ]
        out += [
            f"| {k} | {_num(v.tau)} | {_num(v.low)}..{_num(v.high)} |" for k, v in s.ranking.items()
        ]
    return [*out, ""]


def render_report(s: Evaluation) -> str:
    """Markdown for an evaluation summary built by the evaluate stage."""
    runs = ", ".join(f"{k} run `{v}`" for k, v in s.runs.items() if v)
    out = ["# Graftlab evaluation report", "", verdict_paragraph(s), ""]
    out += [
        "## Arms on the target test split",
        "",
        f"Mean over {len(s.seeds)} paired seeds ({_seeds(s)}; each seed draws the same labelled "
        f"subset, {s.budget}, and random init for every arm). NTG = test error with the source "
        "minus without it (Wang et al., CVPR 2019); > 0 means negative transfer. "
        f"{s.primary} settings: {_settings(s)}. MLflow: {runs} (one nested run per arm and seed).",
        "",
        *_arms_table(s),
        "",
        "![arms](arms.png)",
        "",
    ]
    if s.epochs_saved is not None:
        out += [
            "## Compute saved",
            "",
            f"Epochs {s.baseline} needs to reach its best validation accuracy, minus the epochs "
            f"{s.primary} needs to reach it: " + _per_seed_text(s, s.epochs_saved),
            "",
        ]
    if s.large_validation:
        out += ["## With a large validation set (an unrealistic budget, for comparison)", ""]
        out += [
            f"- {name}: {_pts(iv.mean)} points ({_level(s)} {_ci(iv, _pts)}) when early stopping "
            "reads the whole validation split instead of the budget"
            for name, iv in s.large_validation.items()
        ]
        out.append("")
    if s.freeze_depth:
        out += _depth_section(s)
    if s.label_efficiency:
        out += _label_section(s)
    if s.scores or s.domain:
        out += _scores_section(s)
    out += [
        "## Confusion matrix",
        "",
        f"{s.primary}, first seed.",
        "",
        "![confusion](confusion.png)",
        "",
    ]
    return "\n".join(out)


__all__ = ["mean", "render_report", "verdict_paragraph"]
