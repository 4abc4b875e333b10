"""The candidate-source ranking as markdown: scores, realised accuracy, each score's tau."""

from __future__ import annotations

from pipeline.metrics.candidates import DIRECTION, Candidate, predicted_order, realised_order


def ranking_markdown(candidates: list[Candidate], tau: dict[str, float], labels: int) -> str:
    """The ranking table, the realised order and each score's Kendall tau against it."""
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
    out += ["", "| score | its order | Kendall tau vs realised |", "|---|---|---|"]
    for s in scores:
        t = f"{tau[s]:.3f}" if s in tau else "n/a"
        out.append(f"| {s} | {' > '.join(predicted_order(candidates, s))} | {t} |")
    return "\n".join(out) + "\n"
