"""Rank agreement between a transferability score and realised accuracy.

Kendall, "A New Measure of Rank Correlation", Biometrika 1938; tau-b (tie-corrected) as in
Kendall, "The treatment of ties in ranking problems", Biometrika 1945:

    tau_b = (P - Q) / sqrt((P + Q + T_x) (P + Q + T_y))

with P concordant pairs, Q discordant pairs and T_x, T_y pairs tied only in x or only in y. Used
in the transferability literature (e.g. LogME, You et al., ICML 2021) to measure how well a
transferability score ranks candidate sources/depths against the accuracy actually realised
after fine-tuning: 1 is a perfect ranking, -1 a reversed one.

With few candidates and few seeds one tau says little, so :func:`tau_over_seeds` also gives a
percentile bootstrap interval over the paired seeds (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13): resample the seeds, average scores and accuracies over the resample,
take tau again.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

BOOTSTRAP_RESAMPLES = 2000


def kendall_tau(
    scores: Sequence[float] | np.ndarray, realised: Sequence[float] | np.ndarray
) -> float:
    """Kendall's tau-b between transferability scores and realised accuracies.

    Measures how well a transferability score ranks sources/depths against realised accuracy.

    Args:
        scores: Transferability score of each candidate (source model, depth, ...), shape (k,).
        realised: Realised target accuracy of the same candidates, shape (k,).

    Returns:
        Kendall's tau-b in [-1, 1]; nan when there are fewer than 2 candidates or either input
        is constant (the rank correlation is undefined).

    Raises:
        ValueError: If the inputs are not 1-D, differ in length, or contain non-finite values.
    """
    a = np.asarray(scores, dtype=np.float64)
    b = np.asarray(realised, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError("scores and realised must be 1-D sequences")
    if a.shape != b.shape:
        raise ValueError(
            f"scores and realised must have the same length, got {a.shape[0]} and {b.shape[0]}"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("scores and realised must be finite")
    a, b = _settled(a), _settled(b)
    if a.shape[0] < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(stats.kendalltau(a, b).statistic)


def _settled(v: np.ndarray) -> np.ndarray:
    """``v`` to 9 significant digits of its largest magnitude: values that differ only by
    float rounding are ties (H-score is constant at one label per class, and computing it gave
    9.000000000000002 for one candidate and 9.000000000000004 for another: a tau of -1 from
    noise)."""
    scale = float(np.max(np.abs(v))) if len(v) else 0.0
    return v if scale == 0.0 else np.round(v / scale, 9)


@dataclass(frozen=True)
class Agreement:
    """Kendall's tau-b of a score against realised accuracy, with a bootstrap interval.

    Attributes:
        tau: Tau of the seed-mean scores against the seed-mean accuracies (nan: undefined).
        low: Lower end of the interval over resampled seeds (-1 with one seed: nothing known).
        high: Upper end (1 with one seed).
    """

    tau: float
    low: float
    high: float


def tau_over_seeds(
    scores: np.ndarray | Sequence[Sequence[float]],
    realised: np.ndarray | Sequence[Sequence[float]],
    confidence: float = 0.95,
    seed: int = 0,
) -> Agreement:
    """Kendall's tau-b of the seed means of ``scores`` against those of ``realised``, with a
    paired percentile bootstrap interval over the seeds.

    Args:
        scores: Per seed (rows), each candidate's score (columns), shape (seeds, k).
        realised: Per seed, each candidate's realised accuracy, shape (seeds, k); row i is the
            seed of ``scores``' row i.
        confidence: Interval coverage.
        seed: Seeds the resampling (the same inputs give the same interval).

    Returns:
        The tau and its interval; resamples where tau is undefined (an accuracy column constant
        over the resampled seeds) are left out of the interval.

    Raises:
        ValueError: The inputs are not 2-D of one shape, or hold non-finite values.
    """
    a = np.asarray(scores, dtype=np.float64)
    b = np.asarray(realised, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"scores and realised must be (seeds, candidates) of one shape, got {a.shape} and "
            f"{b.shape}"
        )
    tau = kendall_tau(a.mean(0), b.mean(0))
    if len(a) < 2:
        return Agreement(tau, -1.0, 1.0)

    def of(rows: np.ndarray) -> float:
        rows = np.asarray(rows, dtype=np.intp)
        return kendall_tau(a[rows].mean(0), b[rows].mean(0))

    # scipy resamples the seed indices (paired: a seed's scores and accuracies move together);
    # the percentiles are taken here so that undefined resamples do not make the interval nan
    with warnings.catch_warnings():  # its warning that the interval is nan: handled below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(
            (np.arange(len(a)),),
            of,
            n_resamples=BOOTSTRAP_RESAMPLES,
            vectorized=False,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    taus = res.bootstrap_distribution[np.isfinite(res.bootstrap_distribution)]
    if not len(taus):
        return Agreement(tau, float("nan"), float("nan"))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(taus, [tail, 100 - tail])
    return Agreement(tau, float(low), float(high))
