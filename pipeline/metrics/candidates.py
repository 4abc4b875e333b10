"""Rank candidate sources before any target training, then check each score against the ranking
the candidates realise.

A user with several pretrained models (other data, other backbones, other weights) and a few
labelled target images wants to know which to start from. Each candidate is scored on the
labelled target budget only (each seed's labelled subset: all a user with that budget has) by
LEEP (Nguyen et al., ICML 2020), NCE (Tran et al., ICCV 2019), LogME (You et al., ICML 2021) and
H-score (Bao et al., ICIP 2019), and by the proxy A-distance (Ben-David et al., NeurIPS 2007)
between source and unlabelled target images in its features (no labels). Training an arm from
every candidate realises a ranking; Kendall's tau of each score against it says which score
ranked the candidates best here (TLlib's benchmark finds that no score wins everywhere), with a
bootstrap interval over the paired seeds (:func:`~pipeline.metrics.ranking.tau_over_seeds`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline.data.domain import Split
from pipeline.metrics.domain import proxy_a_distance
from pipeline.metrics.hscore import h_score
from pipeline.metrics.leep import leep
from pipeline.metrics.logme import logme
from pipeline.metrics.nce import nce
from pipeline.metrics.ranking import Agreement, tau_over_seeds
from pipeline.models.grouped import GroupedNet
from pipeline.models.predict import predict_logits

# +1: higher ranks a candidate higher; -1: lower does (a distance)
DIRECTION = {"leep": 1, "nce": 1, "logme": 1, "h_score": 1, "proxy_a_distance": -1}


@dataclass
class Candidate:
    """One candidate source: its scores before target training and what it realised after.

    Attributes:
        name: Candidate name.
        scores: Score name -> value (label scores averaged over the seeds' budgets).
        realised: Per-seed target test accuracy of the arm trained from it (empty: not trained).
        seed_scores: Per seed (the seeds of ``realised``), the label scores on its budget.
    """

    name: str
    scores: dict[str, float] = field(default_factory=dict)
    realised: list[float] = field(default_factory=list)
    seed_scores: list[dict[str, float]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.realised)) if self.realised else float("nan")


def budget_scores(model: GroupedNet, budgets: Mapping[int, Split]) -> list[dict[str, float]]:
    """LEEP, NCE, LogME and H-score of ``model`` on each seed's labelled budget, in its order."""
    per_seed = []
    for budget in budgets.values():
        x = torch.from_numpy(budget.x)
        probs = torch.softmax(predict_logits(model, x), dim=1).double().numpy()
        feats = predict_logits(model, x, features=True).double().numpy()
        per_seed.append(
            {
                "leep": leep(probs, budget.y),
                "nce": nce(probs.argmax(axis=1), budget.y),
                "logme": logme(feats, budget.y),
                "h_score": h_score(feats, budget.y),
            }
        )
    return per_seed


def mean_scores(per_seed: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Each score's mean over the seeds."""
    return {k: float(np.mean([s[k] for s in per_seed])) for k in per_seed[0]}


def domain_distance(
    model: GroupedNet, source: np.ndarray, target: np.ndarray, max_samples: int, seed: int
) -> float:
    """Proxy A-distance between equal-size seeded samples of source and target images in the
    features of ``model`` (unlabelled images: no label is read)."""
    rng = np.random.default_rng(seed)
    n = min(len(source), len(target), max_samples)
    xs = torch.from_numpy(source[rng.permutation(len(source))[:n]])
    xt = torch.from_numpy(target[rng.permutation(len(target))[:n]])
    fs, ft = (predict_logits(model, x, features=True).double().numpy() for x in (xs, xt))
    return proxy_a_distance(fs, ft, seed=seed)


def predicted_order(candidates: Sequence[Candidate], score: str) -> list[str]:
    """Candidate names, best first, as ``score`` ranks them."""
    sign = DIRECTION[score]
    return [c.name for c in sorted(candidates, key=lambda c: -sign * c.scores[score])]


def realised_order(candidates: Sequence[Candidate]) -> list[str]:
    """Candidate names, best realised accuracy first."""
    return [c.name for c in sorted(candidates, key=lambda c: -c.accuracy)]


def rank_agreement(
    candidates: Sequence[Candidate], confidence: float = 0.95, seed: int = 0
) -> dict[str, Agreement]:
    """Kendall's tau-b of each score (signed so that higher = ranked better) against the realised
    accuracy, with a bootstrap interval over the paired seeds; tau nan for fewer than two
    candidates or a constant column. A score with no per-seed values (the proxy A-distance,
    which reads no labels) is the same in every resample."""
    realised = np.array([c.realised for c in candidates]).T  # (seeds, candidates)
    out = {}
    for score, sign in DIRECTION.items():
        if not all(score in c.scores for c in candidates):
            continue
        per_seed = [
            [s[score] for s in c.seed_scores]
            if c.seed_scores and score in c.seed_scores[0]
            else [c.scores[score]] * len(realised)
            for c in candidates
        ]
        out[score] = tau_over_seeds(sign * np.array(per_seed).T, realised, confidence, seed)
    return out
