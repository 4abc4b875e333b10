"""Tests for the proxy A-distance and the unbiased MMD^2 with its permutation test."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from pipeline.metrics.domain import mmd2_unbiased, mmd_permutation_test, proxy_a_distance


def _gaussians(shift: float, seed: int, m: int = 40, n: int = 50, dim: int = 3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, dim)), rng.normal(size=(n, dim)) + shift


def median_bandwidth_reference(x: np.ndarray, y: np.ndarray) -> float:
    pooled = np.concatenate([x, y]).tolist()
    dists = [
        math.dist(pooled[i], pooled[j])
        for i in range(len(pooled))
        for j in range(i + 1, len(pooled))
    ]
    return float(np.median(dists))


def mmd2_reference(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Gretton et al. (2012), eq. (3), summed pair by pair."""

    def k(a, b) -> float:
        return math.exp(-(math.dist(a, b) ** 2) / (2 * sigma**2))

    xs, ys = x.tolist(), y.tolist()
    m, n = len(xs), len(ys)
    sum_xx = sum(k(xs[i], xs[j]) for i in range(m) for j in range(m) if i != j)
    sum_yy = sum(k(ys[i], ys[j]) for i in range(n) for j in range(n) if i != j)
    sum_xy = sum(k(a, b) for a in xs for b in ys)
    return sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2 * sum_xy / (m * n)


# ----------------------------------------------------------------------------- MMD


@pytest.mark.parametrize(("shift", "bandwidth"), [(0.0, None), (0.7, None), (0.7, 0.5), (2.0, 3.0)])
def test_mmd2_matches_reference(shift: float, bandwidth: float | None) -> None:
    x, y = _gaussians(shift, seed=0)
    sigma = median_bandwidth_reference(x, y) if bandwidth is None else bandwidth
    expected = mmd2_reference(x, y, sigma)
    assert mmd2_unbiased(x, y, bandwidth) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_mmd2_is_unbiased_near_zero_for_identical_distributions() -> None:
    estimates = [mmd2_unbiased(*_gaussians(0.0, seed=s)) for s in range(20)]
    assert abs(np.mean(estimates)) < 0.01
    assert min(estimates) < 0.0  # unbiased estimator: not clipped at zero
    assert mmd2_unbiased(*_gaussians(1.0, seed=0)) > 0.1


def test_permutation_test_identical_distributions_gives_large_p_value() -> None:
    x, y = _gaussians(0.0, seed=1)
    mmd2, p_value = mmd_permutation_test(x, y, n_permutations=200, seed=0)
    assert abs(mmd2) < 0.05
    assert p_value > 0.05


def test_permutation_test_shifted_distributions_gives_small_p_value() -> None:
    x, y = _gaussians(1.0, seed=2)
    mmd2, p_value = mmd_permutation_test(x, y, n_permutations=200, seed=0)
    assert mmd2 == pytest.approx(mmd2_unbiased(x, y), rel=1e-9)
    assert p_value == pytest.approx(1 / 201)  # no permutation reaches the observed statistic


def test_permutation_p_value_approaches_exact_enumeration() -> None:
    x, y = _gaussians(0.5, seed=3, m=4, n=4, dim=2)
    sigma = 1.3
    pooled = np.concatenate([x, y])
    observed = mmd2_reference(x, y, sigma)
    splits = list(itertools.combinations(range(8), 4))  # all 70 ways to pick the first sample
    null = [
        mmd2_reference(pooled[list(idx)], pooled[[i for i in range(8) if i not in idx]], sigma)
        for idx in splits
    ]
    p_exact = sum(s >= observed - 1e-12 for s in null) / len(null)
    mmd2, p_value = mmd_permutation_test(x, y, n_permutations=4000, seed=5, bandwidth=sigma)
    assert mmd2 == pytest.approx(observed, rel=1e-9)
    assert 0.05 < p_exact < 0.95  # a non-trivial case
    assert p_value == pytest.approx(p_exact, abs=0.03)


def test_permutation_test_is_reproducible() -> None:
    x, y = _gaussians(0.2, seed=4)
    assert mmd_permutation_test(x, y, seed=1) == mmd_permutation_test(x, y, seed=1)


def test_mmd_rejects_bad_inputs() -> None:
    x, y = _gaussians(0.0, seed=0)
    with pytest.raises(ValueError, match="same number of features"):
        mmd2_unbiased(x, y[:, :2])
    with pytest.raises(ValueError, match="at least 2 samples"):
        mmd2_unbiased(x[:1], y)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd2_unbiased(x, y, bandwidth=0.0)
    with pytest.raises(ValueError, match="n_permutations"):
        mmd_permutation_test(x, y, n_permutations=0)


# ----------------------------------------------------------------------------- proxy A-distance


def test_proxy_a_distance_separable_domains_is_near_two() -> None:
    source, target = _gaussians(6.0, seed=5, m=100, n=100, dim=4)
    assert proxy_a_distance(source, target) > 1.8


def test_proxy_a_distance_identical_domains_is_near_zero() -> None:
    source, target = _gaussians(0.0, seed=6, m=150, n=150, dim=4)
    assert proxy_a_distance(source, target) < 0.3


def test_proxy_a_distance_grows_with_shift_and_stays_in_range() -> None:
    values = [
        proxy_a_distance(*_gaussians(shift, seed=7, m=100, n=100, dim=4)) for shift in (0, 1, 6)
    ]
    assert all(0.0 <= v <= 2.0 for v in values)
    assert values[0] < values[1] < values[2]


def test_proxy_a_distance_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="target"):
        proxy_a_distance(np.zeros((10, 2)), np.zeros(10))
    with pytest.raises(ValueError, match="source"):
        proxy_a_distance(np.full((10, 2), np.nan), np.zeros((10, 2)))
