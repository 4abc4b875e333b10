"""Negative transfer gap (NTG).

Wang, Dai, Póczos and Carbonell, "Characterizing and Avoiding Negative Transfer", CVPR 2019.

For a target task ``T``, source data ``S`` and learning algorithm ``A`` with target error
``eps_T``, the negative transfer gap is

    NTG = eps_T(A(S, T)) - eps_T(A(emptyset, T)),

i.e. error with the source minus error without it. NTG > 0 means negative transfer (the source
hurts), NTG < 0 means positive transfer. Here the gap is computed per seed (paired runs) and
summarised with a two-sided Student-t confidence interval over seeds:

    mean +- t_{(1 + confidence) / 2, n - 1} * s / sqrt(n),   s = sample std (ddof = 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.metrics.intervals import DIFFERENCE, mean_interval


@dataclass(frozen=True)
class NTGResult:
    """Summary of paired negative-transfer gaps.

    Attributes:
        gaps: Per-seed gaps (error with source - error without source), length n.
        mean: Mean gap.
        ci_low: Lower end of the Student-t confidence interval (-inf when n == 1).
        ci_high: Upper end of the Student-t confidence interval (inf when n == 1).
        n: Number of paired seeds.
    """

    gaps: tuple[float, ...]
    mean: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def verdict(self) -> str:
        """Direction of transfer supported by the confidence interval.

        Returns:
            ``"negative"`` (the source hurts) if ci_low > 0, ``"positive"`` (the source helps) if
            ci_high < 0, else ``"inconclusive"``.
        """
        if self.ci_low > 0:
            return "negative"
        if self.ci_high < 0:
            return "positive"
        return "inconclusive"


def negative_transfer_gap(
    error_with_source: Sequence[float],
    error_without_source: Sequence[float],
    confidence: float = 0.95,
) -> NTGResult:
    """Compute the paired negative transfer gap with a Student-t confidence interval.

    Args:
        error_with_source: Target error of the model trained with the source, one per seed,
            length n.
        error_without_source: Target error of the model trained without the source, paired by
            seed with ``error_with_source``, length n.
        confidence: Confidence level of the interval, in (0, 1).

    Returns:
        The per-seed gaps, their mean and confidence interval; ``(-inf, inf)`` when n == 1.

    Raises:
        ValueError: If the sequences are empty, differ in length, contain non-finite values, or
            ``confidence`` is not in (0, 1).
    """
    with_src = np.asarray(error_with_source, dtype=np.float64)
    without_src = np.asarray(error_without_source, dtype=np.float64)
    if with_src.ndim != 1 or without_src.ndim != 1:
        raise ValueError("error_with_source and error_without_source must be 1-D sequences")
    if with_src.shape[0] == 0 or without_src.shape[0] == 0:
        raise ValueError("error_with_source and error_without_source must not be empty")
    if with_src.shape != without_src.shape:
        raise ValueError(
            "error_with_source and error_without_source must have the same length (paired by "
            f"seed), got {with_src.shape[0]} and {without_src.shape[0]}"
        )
    if not (np.all(np.isfinite(with_src)) and np.all(np.isfinite(without_src))):
        raise ValueError("error_with_source and error_without_source must be finite")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")

    gaps = with_src - without_src
    mean, ci_low, ci_high = mean_interval(gaps, confidence, DIFFERENCE)
    return NTGResult(
        gaps=tuple(float(g) for g in gaps), mean=mean, ci_low=ci_low, ci_high=ci_high, n=len(gaps)
    )
