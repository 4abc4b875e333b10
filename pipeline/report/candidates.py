"""The candidate-source ranking as markdown: scores, realised accuracy, each score's tau."""

from __future__ import annotations

from pipeline.metrics.candidates import DIRECTION, Candidate, predicted_order, realised_order
from pipeline.metrics.ranking import Agreement
from pipeline.report.markdown import _num


def ranking_markdown(
    candidates: list[Candidate], tau: dict[str, Agreement], labels: int, confidence: float = 0.95
) -> str:
    """The ranking table, the realised order and each score's Kendall tau against it, with its
    bootstrap interval over the paired seeds."""
    scores = list(DIRECTION)
    out = [
        "# Candidate sources",
        "",
        f"Scores on the labelled target budget ({labels} per class per seed, mean over seeds) "
        "before any target training; proxy A-distance on unlabelled images (lower = closer).",
        "",
        "| candidate | " + " | ".join(scores) + " | realised test acc % |",
        "|---" * (len(scores) + 2) + "|",
    ]
    for c in candidates:
        acc = f"{100 * c.accuracy:.1f}" if c.realised else "not trained"
        cells = [f"{c.scores[s]:.4g}" for s in scores] + [acc]
        out.append(f"| {c.name} | " + " | ".join(cells) + " |")
    if tau:
        out += ["", f"Realised order: {' > '.join(realised_order(candidates))}"]
    level = f"{round(100 * confidence)}% interval over seeds"
    out += ["", f"| score | its order | Kendall tau vs realised | {level} |", "|---|---|---|---|"]
    for s in scores:
        t, iv = (
            (_num(tau[s].tau), f"{_num(tau[s].low)}..{_num(tau[s].high)}")
            if s in tau
            else ("n/a", "n/a")
        )
        out.append(f"| {s} | {' > '.join(predicted_order(candidates, s))} | {t} | {iv} |")
    return "\n".join(out) + "\n"
