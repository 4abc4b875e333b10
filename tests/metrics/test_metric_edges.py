"""Edge cases of the scores that decide a result but that random data never reaches: a source
class with no probability mass (LEEP), rank-deficient features (LogME, H-score), a zero median
distance (MMD), ties in the permutation test, PAD's protocol and its clipping at 0."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.metrics.domain import mmd2_unbiased, mmd_permutation_test, proxy_a_distance
from pipeline.metrics.hscore import h_score
from pipeline.metrics.leep import leep
from pipeline.metrics.logme import logme
from tests.metrics.test_transferability import h_score_reference, logme_reference


def test_leep_ignores_a_source_class_that_no_sample_puts_mass_on():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    probs = rng.dirichlet(np.ones(4), size=40)
    padded = np.insert(probs, 2, 0.0, axis=1)  # a source class with P(z) = 0
    assert leep(padded, y) == pytest.approx(leep(probs, y), rel=1e-12)


def test_logme_of_rank_deficient_features_matches_the_reference():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(50, 4))
    f = np.hstack([f, f[:, :2]])  # 6 features of rank 4, more samples than features
    y = rng.integers(0, 3, 50)
    value = logme(f, y)
    assert np.isfinite(value) and value == pytest.approx(logme_reference(f, y), rel=1e-3)


@pytest.mark.parametrize("scale", [1e6, 1e-4])
def test_h_score_cut_off_is_relative_to_the_largest_eigenvalue(scale):
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(3), 20)
    f = rng.normal(size=(60, 3))
    f = np.hstack([f, f[:, :1], (y[:, None] == 1) * 1e-4])  # a dependent column; a faint one
    f *= scale
    assert h_score(f, y) == pytest.approx(h_score_reference(f, y), rel=1e-6)


def test_mmd_bandwidth_is_the_median_distance_or_1_when_that_is_0():
    rng = np.random.default_rng(3)
    small = rng.normal(scale=1e-3, size=(8, 2))
    median = float(np.median(pdist(np.vstack([small, small + 1e-3]))))
    assert median < 1
    assert mmd2_unbiased(small, small + 1e-3) == pytest.approx(
        mmd2_unbiased(small, small + 1e-3, bandwidth=median), rel=1e-12
    )
    # most pairs coincide, so the median distance is 0: the fallback bandwidth 1.0
    x = np.vstack([np.zeros((5, 2)), [[0.5, 0.5]]])
    y = np.vstack([np.zeros((5, 2)), [[-1.0, 0.2]]])
    assert float(np.median(pdist(np.vstack([x, y])))) == 0.0
    assert mmd2_unbiased(x, y, bandwidth=1.0) != pytest.approx(mmd2_unbiased(x, y, bandwidth=2.0))
    assert mmd2_unbiased(x, y) == pytest.approx(mmd2_unbiased(x, y, bandwidth=1.0), rel=1e-12)
    assert mmd2_unbiased(np.zeros((6, 2)), np.zeros((4, 2))) == 0.0  # all distances 0


def test_permutation_test_counts_ties_and_its_defaults_are_200_and_seed_0():
    same = np.ones((4, 2))
    assert mmd_permutation_test(same, same, n_permutations=20) == (0.0, 1.0)  # all tie
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(10, 2)), rng.normal(0.3, size=(12, 2))
    assert mmd_permutation_test(x, y) == mmd_permutation_test(x, y, n_permutations=200, seed=0)


def _pad_reference(src: np.ndarray, tgt: np.ndarray, seed: int) -> tuple[float, float]:
    """Ben-David et al.'s protocol as the docstring states it: a stratified half split, a
    standardised logistic regression, PAD = 2 (1 - 2 err) clipped to [0, 2]."""
    data = np.vstack([src, tgt])
    domain = np.r_[np.zeros(len(src)), np.ones(len(tgt))]
    x_tr, x_te, d_tr, d_te = train_test_split(
        data, domain, test_size=0.5, stratify=domain, random_state=seed
    )
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x_tr, d_tr)
    error = float(np.mean(clf.predict(x_te) != d_te))
    return error, float(np.clip(2 * (1 - 2 * error), 0, 2))


def test_proxy_a_distance_follows_the_protocol_and_clips_at_0():
    rng = np.random.default_rng(5)
    scales = np.array([1.0, 1000.0])  # standardisation matters for a regularised classifier
    src = rng.normal(size=(30, 2)) * scales
    tgt = (rng.normal(size=(26, 2)) + np.array([0.6, 0.0])) * scales
    for seed in (0, 1, 2):
        assert proxy_a_distance(src, tgt, seed=seed) == _pad_reference(src, tgt, seed)[1]
    assert proxy_a_distance(src, tgt) == proxy_a_distance(src, tgt, seed=0)
    # the same distribution twice: some split makes the classifier worse than chance, PAD 0
    same = rng.normal(size=(30, 2))
    worse = [s for s in range(40) if _pad_reference(same[:15], same[15:], s)[0] > 0.5]
    assert worse, "no seed in 0..39 gives an error above 0.5"
    assert proxy_a_distance(same[:15], same[15:], seed=worse[0]) == 0.0
