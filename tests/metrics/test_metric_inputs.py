"""The scores refuse bad arrays with messages that name the argument and what was wrong, and take
every valid edge case (one sample, one feature, two candidates, one permutation).

Exact messages: a test that only checks the exception type passes for any message, including a
wrong one (issue 11, item 13).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipeline.metrics._inputs import features_and_labels
from pipeline.metrics.domain import mmd2_unbiased, mmd_permutation_test, proxy_a_distance
from pipeline.metrics.hscore import h_score
from pipeline.metrics.leep import leep
from pipeline.metrics.logme import logme
from pipeline.metrics.nce import nce
from pipeline.metrics.ntg import negative_transfer_gap
from pipeline.metrics.ranking import kendall_tau

RNG = np.random.default_rng(0)
F = RNG.normal(size=(6, 3))
Y = np.array([0, 1, 2, 0, 1, 2])
P = np.full((6, 4), 0.25)


def _raises(message: str, call, *args, **kwargs) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call(*args, **kwargs)


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (F[0], Y, "features must be a non-empty 2-D array of shape (n, D), got shape (3,)"),
        (F[:0], Y[:0], "features must be a non-empty 2-D array of shape (n, D), got shape (0, 3)"),
        (F[:, :0], Y, "features must be a non-empty 2-D array of shape (n, D), got shape (6, 0)"),
        (np.full((6, 3), np.inf), Y, "features must be finite (no NaN or inf)"),
        (F, Y[:5], "labels must be a 1-D array of the same length as features (6), got shape (5,)"),
        (F, Y[None], "labels must be a 1-D array of the same length as features (6), got shape "),
        (F, Y - 1, "labels must be non-negative integers (class indices)"),
        (F, Y * 1.0, "labels must be non-negative integers (class indices)"),
    ],
)
def test_features_and_labels_name_the_problem(features, labels, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        features_and_labels(features, labels)


def test_features_and_labels_take_one_sample_and_one_feature():
    f, y = features_and_labels(np.ones((1, 1), np.float32), np.array([0], np.int32))
    assert (f.dtype, f.shape, y.dtype) == (np.float64, (1, 1), np.int64)
    f, _ = features_and_labels(np.arange(4).reshape(2, 2), np.array([0, 1]))  # ints become floats
    assert f.dtype == np.float64 and f.tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_score_messages_use_the_names_their_callers_know():
    _raises("source_probs must be non-negative", leep, P - 0.3, Y)
    _raises("source_probs must be finite (no NaN or inf)", leep, P * np.nan, Y)
    _raises("target_labels must be non-negative integers (class indices)", leep, P, -Y)
    _raises("source_probs rows must sum to 1 (softmax outputs) within 0.0001", leep, P * 1.1, Y)
    _raises("labels must be non-negative integers (class indices)", logme, F, -Y)
    _raises("features must be finite (no NaN or inf)", h_score, F * np.inf, Y)
    _raises("source_labels must be a non-empty 1-D array, got shape (0,)", nce, Y[:0], Y)
    _raises(
        "target_labels must be a non-empty 1-D array, got shape (2, 3)", nce, Y, Y.reshape(2, 3)
    )
    _raises(
        "source_labels must contain integers (class indices), got dtype float64", nce, Y * 1.0, Y
    )
    _raises("source_labels and target_labels must have the same length, got 6 and 5", nce, Y, Y[:5])


def test_leep_rows_must_sum_to_one_within_exactly_1e_4():
    ok = P.copy()
    ok[:, 0] += 0.9e-4  # within the tolerance (numpy's default rtol would widen it)
    assert np.isfinite(leep(ok, Y))
    bad = P.copy()
    bad[:, 0] += 1.05e-4
    _raises("source_probs rows must sum to 1 (softmax outputs) within 0.0001", leep, bad, Y)


def test_nce_of_a_single_sample_is_zero():
    assert nce(np.array([3]), np.array([1])) == 0.0


SAMPLE = "must be a 2-D array of shape (n_samples, n_features) with at least 2 samples, got shape"
PERMUTATIONS = "n_permutations must be a positive integer, got"
BANDWIDTH = "bandwidth must be a positive finite number or None, got"
WIDTHS = "must have the same number of features, got"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mmd2_unbiased(F[:1], F), f"x {SAMPLE} (1, 3)"),
        (lambda: mmd2_unbiased(F, F[:, :0]), f"y {SAMPLE} (6, 0)"),
        (lambda: mmd2_unbiased(F, F * np.nan), "y must be finite (no NaN or inf)"),
        (lambda: mmd2_unbiased(F[:, :2], F), f"x and y {WIDTHS} 2 and 3"),
        (lambda: mmd_permutation_test(F[0], F), f"x {SAMPLE} (3,)"),
        (lambda: mmd_permutation_test(F, F[:1]), f"y {SAMPLE} (1, 3)"),
        (lambda: mmd_permutation_test(F, F, n_permutations=0), f"{PERMUTATIONS} 0"),
        (lambda: mmd_permutation_test(F, F, n_permutations=2.5), f"{PERMUTATIONS} 2.5"),
        (lambda: mmd_permutation_test(F, F, n_permutations=True), f"{PERMUTATIONS} True"),
        (lambda: mmd2_unbiased(F, F, bandwidth=0.0), f"{BANDWIDTH} 0.0"),
        (lambda: proxy_a_distance(F, F[:1]), f"target {SAMPLE} (1, 3)"),
        (lambda: proxy_a_distance(F[:, :1], F), f"source and target {WIDTHS} 1 and 3"),
    ],
)  # fmt: skip
def test_domain_scores_name_the_argument(call, message):
    _raises(message, call)


def test_domain_scores_take_two_samples_one_feature_and_one_permutation():
    a, b = np.array([[0.0], [1.0]]), np.array([[5.0], [6.0]])
    assert np.isfinite(mmd2_unbiased(a, b))
    mmd2, p = mmd_permutation_test(a, b, n_permutations=1)
    assert mmd2 == mmd2_unbiased(a, b) and p in (0.5, 1.0)
    four = np.array([[0.0], [1.0], [5.0], [6.0]])
    assert 0.0 <= proxy_a_distance(four, four + 10) <= 2.0


BOTH = "error_with_source and error_without_source"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([0.1], [[0.2]]), f"{BOTH} must be 1-D sequences"),
        (([[0.1]], [0.2]), f"{BOTH} must be 1-D sequences"),
        (([], [0.2]), f"{BOTH} must not be empty"),
        (([0.1], []), f"{BOTH} must not be empty"),
        (([0.1, 0.2], [0.2]), f"{BOTH} must have the same length (paired by seed), got 2 and 1"),
        (([0.1], [np.nan]), f"{BOTH} must be finite"),
        (([np.inf], [0.1]), f"{BOTH} must be finite"),
        (([0.1, 0.2], [0.2, 0.1], 0.0), "confidence must be in (0, 1), got 0.0"),
        (([0.1, 0.2], [0.2, 0.1], 1.0), "confidence must be in (0, 1), got 1.0"),
    ],
)  # fmt: skip
def test_negative_transfer_gap_names_the_problem(args, message):
    _raises(message, negative_transfer_gap, *args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([1.0, 2.0], [[1.0, 2.0]]), "scores and realised must be 1-D sequences"),
        (([[1.0, 2.0]], [1.0, 2.0]), "scores and realised must be 1-D sequences"),
        (([1.0, 2.0], [1.0]), "scores and realised must have the same length, got 2 and 1"),
        (([1.0, np.nan], [1.0, 2.0]), "scores and realised must be finite"),
        (([1.0, 2.0], [np.inf, 2.0]), "scores and realised must be finite"),
    ],
)
def test_kendall_tau_names_the_problem(args, message):
    _raises(message, kendall_tau, *args)


def test_kendall_tau_of_two_candidates_and_of_constant_inputs():
    assert kendall_tau([1, 2], [3, 4]) == 1.0
    assert kendall_tau([1, 2], [4, 3]) == -1.0
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert np.isnan(kendall_tau([1, 2, 3], [5, 5, 5]))
    assert np.isnan(kendall_tau([1], [2]))
