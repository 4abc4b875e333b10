"""Tests for Kendall's tau between transferability scores and realised accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.metrics.ranking import kendall_tau, tau_over_seeds


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


def test_tau_over_seeds_is_tau_of_the_seed_means_with_the_resampled_extremes() -> None:
    # two seeds: a resample holds seed 0 twice, seed 1 twice or one of each, so the 95%
    # percentile interval of 2000 resamples runs from the lowest of those taus to the highest
    scores = [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]
    realised = [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]]  # seed 0 agrees, seed 1 is reversed
    out = tau_over_seeds(scores, realised)
    assert math.isnan(out.tau)  # the mean accuracies are all 0.2: no ranking
    assert (out.low, out.high) == (-1.0, 1.0)
    realised = [[0.1, 0.2, 0.3], [0.1, 0.3, 0.2]]  # seed 1 swaps one pair
    out = tau_over_seeds(scores, realised)
    means = np.mean(realised, axis=0)
    assert out.tau == kendall_tau([1, 2, 3], means)
    assert (out.low, out.high) == (pytest.approx(1 / 3), 1.0)
    assert tau_over_seeds(scores, realised, seed=1) == tau_over_seeds(scores, realised, seed=1)


def test_tau_over_seeds_narrows_when_every_seed_agrees() -> None:
    rng = np.random.default_rng(0)
    order = np.arange(4.0)  # every seed ranks the candidates the same way, by its own values
    scores = order + rng.uniform(0, 0.5, size=(5, 4))
    same = order / 10 + rng.uniform(0, 0.05, size=(5, 4))
    agree = tau_over_seeds(scores, same)
    assert (agree.tau, agree.low, agree.high) == (1.0, 1.0, 1.0)
    noisy = tau_over_seeds(scores, rng.normal(size=(5, 4)))
    assert noisy.low < noisy.high and noisy.low < 0.5
    narrow = tau_over_seeds(scores, rng.normal(size=(5, 4)), confidence=0.5)
    assert -1 <= narrow.low <= narrow.high <= 1


def test_tau_over_seeds_one_seed_knows_nothing_and_bad_shapes_raise() -> None:
    out = tau_over_seeds([[1.0, 2.0]], [[0.5, 0.7]])
    assert (out.tau, out.low, out.high) == (1.0, -1.0, 1.0)
    with pytest.raises(ValueError, match="one shape"):
        tau_over_seeds([[1.0, 2.0]], [[0.5, 0.7, 0.1]])
    with pytest.raises(ValueError, match="one shape"):
        tau_over_seeds([1.0, 2.0], [0.5, 0.7])


def test_values_equal_up_to_float_rounding_are_ties() -> None:
    # the rank stage's H-score at one label per class: 9 for every candidate, up to rounding
    assert math.isnan(kendall_tau([9.000000000000002, 9.000000000000004], [0.7, 0.5]))
    assert kendall_tau([1.0, 1.0 + 1e-15, 2.0], [0.1, 0.2, 0.3]) == kendall_tau(
        [1.0, 1.0, 2.0], [0.1, 0.2, 0.3]
    )
    assert kendall_tau([1e-9, 2e-9, 3e-9], [0.1, 0.2, 0.3]) == 1.0  # small, yet apart
