"""Rank agreement between a transferability score and realised accuracy.

Kendall, "A New Measure of Rank Correlation", Biometrika 1938; tau-b (tie-corrected) as in
Kendall, "The treatment of ties in ranking problems", Biometrika 1945:

    tau_b = (P - Q) / sqrt((P + Q + T_x) (P + Q + T_y))

with P concordant pairs, Q discordant pairs and T_x, T_y pairs tied only in x or only in y. Used
in the transferability literature (e.g. LogME, You et al., ICML 2021) to measure how well a
transferability score ranks candidate sources/depths against the accuracy actually realised
after fine-tuning: 1 is a perfect ranking, -1 a reversed one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


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
    if a.shape[0] < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(stats.kendalltau(a, b).statistic)
