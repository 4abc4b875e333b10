"""Mean and two-sided Student-t confidence interval over a few paired seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of ``mean +- t_{(1+c)/2, n-1} * s / sqrt(n)``; (-inf, inf) when n == 1."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError("values must be a non-empty 1-D sequence")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(v.mean())
    if len(v) == 1:
        return mean, -math.inf, math.inf
    half = stats.t.ppf((1.0 + confidence) / 2.0, df=len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return mean, float(mean - half), float(mean + half)
