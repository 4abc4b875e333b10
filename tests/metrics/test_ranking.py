"""Tests for Kendall's tau between transferability scores and realised accuracy."""

from __future__ import annotations

import math

import pytest

from pipeline.metrics.ranking import kendall_tau


def test_perfect_and_reversed_rankings() -> None:
    scores = [-1.2, -0.8, -0.5, -0.1]
    assert kendall_tau(scores, [0.61, 0.70, 0.74, 0.90]) == pytest.approx(1.0)
    assert kendall_tau(scores, [0.90, 0.74, 0.70, 0.61]) == pytest.approx(-1.0)


def test_one_swap_out_of_six_pairs() -> None:
    # pairs: 5 concordant, 1 discordant -> (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)


def test_ties_use_tau_b() -> None:
    # x = [1, 1, 2], y = [1, 2, 3]: P = 2, Q = 0, one pair tied in x only
    assert kendall_tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(2 * 3))


@pytest.mark.parametrize(
    ("scores", "realised"), [([0.5], [0.9]), ([], []), ([1.0, 1.0, 1.0], [0.2, 0.5, 0.7])]
)
def test_undefined_cases_are_nan(scores: list[float], realised: list[float]) -> None:
    assert math.isnan(kendall_tau(scores, realised))


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1.0, 2.0], [1.0])
