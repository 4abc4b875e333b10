"""Tests for the negative transfer gap and its Student-t interval."""

from __future__ import annotations

import dataclasses
import math

import pytest
from scipy import stats

from pipeline.metrics.ntg import NTGResult, negative_transfer_gap


def _t_interval(gaps: list[float], confidence: float) -> tuple[float, float]:
    n = len(gaps)
    mean = sum(gaps) / n
    std = math.sqrt(sum((g - mean) ** 2 for g in gaps) / (n - 1))
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return mean - half, mean + half


def test_source_that_hurts_gives_negative_verdict() -> None:
    with_source = [0.30, 0.32, 0.31, 0.33]
    without_source = [0.25, 0.26, 0.27, 0.25]
    result = negative_transfer_gap(with_source, without_source)
    assert result.gaps == pytest.approx((0.05, 0.06, 0.04, 0.08))
    assert result.mean == pytest.approx(0.0575)
    assert result.n == 4
    low, high = _t_interval([0.05, 0.06, 0.04, 0.08], 0.95)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high))
    assert result.ci_low > 0
    assert result.verdict == "negative"


def test_source_that_helps_gives_positive_verdict() -> None:
    result = negative_transfer_gap([0.10, 0.12, 0.11], [0.20, 0.19, 0.23], confidence=0.9)
    assert result.mean == pytest.approx(-0.2 / 3 - 0.03)
    low, high = _t_interval(list(result.gaps), 0.9)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high))
    assert result.ci_high < 0
    assert result.verdict == "positive"


def test_mixed_gaps_are_inconclusive() -> None:
    result = negative_transfer_gap([0.20, 0.25, 0.18, 0.24], [0.22, 0.21, 0.20, 0.21])
    assert result.ci_low < 0 < result.ci_high
    assert result.verdict == "inconclusive"


def test_higher_confidence_widens_the_interval() -> None:
    args = ([0.30, 0.32, 0.31, 0.33], [0.25, 0.26, 0.27, 0.25])
    narrow = negative_transfer_gap(*args, confidence=0.8)
    wide = negative_transfer_gap(*args, confidence=0.99)
    assert wide.ci_low < narrow.ci_low < narrow.mean < narrow.ci_high < wide.ci_high


def test_single_seed_has_infinite_interval_and_is_inconclusive() -> None:
    result = negative_transfer_gap([0.4], [0.1])
    assert result.mean == pytest.approx(0.3)
    assert result.ci_low == -math.inf
    assert result.ci_high == math.inf
    assert result.verdict == "inconclusive"


def test_result_is_frozen() -> None:
    result = negative_transfer_gap([0.3, 0.4], [0.1, 0.2])
    assert isinstance(result, NTGResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.mean = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("with_source", "without_source", "confidence", "message"),
    [
        ([0.1, 0.2], [0.1], 0.95, "same length"),
        ([], [], 0.95, "empty"),
        ([0.1, float("nan")], [0.1, 0.2], 0.95, "finite"),
        ([0.1, 0.2], [0.1, 0.2], 1.0, "confidence"),
    ],
)
def test_invalid_inputs_raise(
    with_source: list[float], without_source: list[float], confidence: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        negative_transfer_gap(with_source, without_source, confidence=confidence)
