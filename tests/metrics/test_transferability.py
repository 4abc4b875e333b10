"""Tests for LEEP, NCE, LogME and H-score against plain reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.metrics.hscore import h_score
from pipeline.metrics.leep import leep
from pipeline.metrics.logme import logme
from pipeline.metrics.nce import nce

RTOL = 1e-3


def _rel_diff(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _random_task(seed: int, n: int = 120, n_source: int = 7, n_target: int = 4):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_target, size=n)
    logits = rng.normal(size=(n, n_source))
    logits[np.arange(n), labels % n_source] += 1.5  # some dependence between z and y
    return _softmax(logits), labels


# ----------------------------------------------------------------------------- references


def leep_reference(theta: np.ndarray, y: np.ndarray) -> float:
    """LEEP straight from Nguyen et al. (2020), with loops over samples and classes."""
    n, n_source = theta.shape
    n_target = int(max(y)) + 1
    joint = [[0.0] * n_source for _ in range(n_target)]
    for i in range(n):
        for z in range(n_source):
            joint[y[i]][z] += theta[i, z] / n
    marginal = [sum(joint[c][z] for c in range(n_target)) for z in range(n_source)]
    total = 0.0
    for i in range(n):
        eep = sum(joint[y[i]][z] / marginal[z] * theta[i, z] for z in range(n_source))
        total += math.log(eep)
    return total / n


def nce_reference(z: np.ndarray, y: np.ndarray) -> float:
    """-H(Y|Z) straight from Tran et al. (2019), with counting dictionaries."""
    n = len(z)
    joint: dict[tuple[int, int], int] = {}
    marginal: dict[int, int] = {}
    for zi, yi in zip(z.tolist(), y.tolist(), strict=True):
        joint[(zi, yi)] = joint.get((zi, yi), 0) + 1
        marginal[zi] = marginal.get(zi, 0) + 1
    total = 0.0
    for (zi, _), count in joint.items():
        total += count / n * math.log(count / marginal[zi])
    return total


def logme_reference(f: np.ndarray, y: np.ndarray) -> float:
    """Port of thuml/LogME ``LogME._fit_fixed_point`` (classification), one class at a time."""
    f = f.astype(np.float64)
    N, D = f.shape
    if N > D:  # ``truncated_svd`` of the reference code
        _, s, vh = np.linalg.svd(f.T @ f)
        s = np.sqrt(s)
        u_times_sigma = f @ vh.T
        k = int(np.sum(s > 1e-10))
        s = s.reshape(-1, 1)[:k]
        u = u_times_sigma[:, :k] / s.reshape(1, -1)
    else:
        u, s, _ = np.linalg.svd(f, full_matrices=False)
    s = s.reshape(-1, 1)
    sigma = s**2
    evidences = []
    for i in range(int(y.max() + 1)):
        y_ = (y == i).astype(np.float64).reshape(-1, 1)
        x = u.T @ y_
        x2 = x**2
        res_x2 = (y_**2).sum() - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / ((t + sigma) ** 2)).sum()
            res2 = (x2 / ((1 + sigma / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (N - gamma) / (res2 + 1e-5)
            t_ = alpha / beta
            if abs(t_ - t) / t <= 1e-3:
                break
        evidence = (
            D / 2.0 * np.log(alpha)
            + N / 2.0 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sigma))
            - beta / 2.0 * res2
            - alpha / 2.0 * m2
            - N / 2.0 * np.log(2 * np.pi)
        )
        evidences.append(evidence / N)
    return float(np.mean(evidences))


def h_score_reference(f: np.ndarray, y: np.ndarray) -> float:
    """tr(cov(f)^+ cov(E[f|y])) as in Bao et al. (2019): build g = E[f|y] class by class."""
    f = f.astype(np.float64)
    n, D = f.shape
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)

    def cov(a: np.ndarray) -> np.ndarray:
        centred = a - a.mean(axis=0)
        return centred.T @ centred / (len(a) - 1)

    rtol = max(n, D) * np.finfo(np.float64).eps
    return float(np.trace(np.linalg.pinv(cov(f), rtol=rtol, hermitian=True) @ cov(g)))


# ----------------------------------------------------------------------------- LEEP


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leep_matches_reference(seed: int) -> None:
    probs, labels = _random_task(seed)
    assert _rel_diff(leep(probs, labels), leep_reference(probs, labels)) < RTOL


def test_leep_is_non_positive_and_informative_source_scores_higher() -> None:
    probs, labels = _random_task(3)
    rng = np.random.default_rng(3)
    noise = _softmax(rng.normal(size=probs.shape))
    informative = leep(probs, labels)
    assert informative <= 0.0
    assert leep(noise, labels) <= 0.0
    assert informative > leep(noise, labels)


def test_leep_of_perfect_source_is_zero() -> None:
    labels = np.array([0, 1, 2, 3, 1, 2, 0, 3, 3])
    probs = np.eye(4)[labels]
    assert leep(probs, labels) == pytest.approx(0.0, abs=1e-12)


def test_leep_invariant_to_permuting_source_classes() -> None:
    probs, labels = _random_task(4)
    perm = np.random.default_rng(4).permutation(probs.shape[1])
    assert leep(probs[:, perm], labels) == pytest.approx(leep(probs, labels), rel=1e-12)


def test_leep_rejects_bad_inputs() -> None:
    probs, labels = _random_task(5, n=10)
    with pytest.raises(ValueError, match="target_labels"):
        leep(probs, labels[:-1])
    with pytest.raises(ValueError, match="target_labels"):
        leep(probs, labels.astype(float))
    with pytest.raises(ValueError, match="target_labels"):
        leep(probs, labels - 5)
    with pytest.raises(ValueError, match="sum to 1"):
        leep(probs * 2.0, labels)
    with pytest.raises(ValueError, match="source_probs"):
        leep(probs[:, 0], labels)


# ----------------------------------------------------------------------------- NCE


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nce_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, size=150)
    z = np.where(rng.random(150) < 0.6, y * 2 + 1, rng.integers(0, 12, size=150))
    assert _rel_diff(nce(z, y), nce_reference(z, y)) < RTOL


def test_nce_is_zero_when_y_is_a_function_of_z() -> None:
    z = np.random.default_rng(6).integers(0, 10, size=80)
    y = z // 3  # several source classes map to one target class
    assert nce(z, y) == pytest.approx(0.0, abs=1e-12)


def test_nce_is_negative_for_independent_labels_and_invariant_to_relabelling_z() -> None:
    rng = np.random.default_rng(7)
    z = rng.integers(0, 6, size=200)
    y = rng.integers(0, 3, size=200)
    score = nce(z, y)
    assert score < -0.5  # close to -log(3) for independent uniform labels
    relabel = rng.permutation(6) * 10 + 3  # bijective, not contiguous
    assert nce(relabel[z], y) == pytest.approx(score, rel=1e-12)


def test_nce_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="same length"):
        nce(np.array([0, 1, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="source_labels"):
        nce(np.array([0.5, 1.0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="target_labels"):
        nce(np.array([0, 1]), np.array([], dtype=int))


# ----------------------------------------------------------------------------- LogME


@pytest.mark.parametrize(("n", "dim", "seed"), [(150, 20, 0), (40, 60, 1), (200, 8, 2)])
def test_logme_matches_official_loop(n: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    features = rng.normal(size=(n, dim)) + 0.8 * np.eye(4, dim)[labels]
    diff = _rel_diff(logme(features, labels), logme_reference(features, labels))
    assert diff < RTOL
    assert diff < 1e-9  # same iteration and stopping rule, so equal up to rounding


def test_logme_matches_official_loop_with_absent_class_index() -> None:
    rng = np.random.default_rng(8)
    labels = rng.choice([0, 1, 3], size=90)  # class 2 never occurs but counts, as upstream
    features = rng.normal(size=(90, 12))
    assert _rel_diff(logme(features, labels), logme_reference(features, labels)) < 1e-9


def logme_exact(f: np.ndarray, y: np.ndarray, iterations: int = 50) -> float:
    """LogME from the paper's formulas with the D x D matrix A, iterated to convergence."""
    N, D = f.shape
    gram = f.T @ f
    eigvals = np.linalg.eigvalsh(gram)
    evidences = []
    for c in range(int(y.max()) + 1):
        t = (y == c).astype(np.float64)
        alpha, beta = 1.0, 1.0
        for _ in range(iterations):
            A = alpha * np.eye(D) + beta * gram
            m = beta * np.linalg.solve(A, f.T @ t)
            gamma = np.sum(beta * eigvals / (alpha + beta * eigvals))
            alpha = gamma / (m @ m)
            beta = (N - gamma) / np.sum((f @ m - t) ** 2)
        A = alpha * np.eye(D) + beta * gram
        m = beta * np.linalg.solve(A, f.T @ t)
        evidence = (
            D / 2 * np.log(alpha)
            + N / 2 * np.log(beta)
            - N / 2 * np.log(2 * np.pi)
            - beta / 2 * np.sum((f @ m - t) ** 2)
            - alpha / 2 * (m @ m)
            - 0.5 * np.linalg.slogdet(A)[1]
        )
        evidences.append(evidence / N)
    return float(np.mean(evidences))


def test_logme_close_to_exact_evidence_when_more_samples_than_features() -> None:
    rng = np.random.default_rng(12)
    labels = rng.integers(0, 3, size=120)
    features = rng.normal(size=(120, 10)) + np.eye(3, 10)[labels]
    assert _rel_diff(logme(features, labels), logme_exact(features, labels)) < RTOL


def test_logme_prefers_features_that_determine_labels() -> None:
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 3, size=150)
    noise = rng.normal(size=(150, 16))
    informative = noise.copy()
    informative[:, :3] = 4.0 * np.eye(3)[labels] + 0.1 * noise[:, :3]
    assert logme(informative, labels) > logme(noise, labels)


def test_logme_rejects_bad_inputs() -> None:
    features = np.zeros((5, 3))
    with pytest.raises(ValueError, match="labels"):
        logme(features, np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="labels"):
        logme(features, np.array([0, 1, 0, 1, -1]))
    with pytest.raises(ValueError, match="features"):
        logme(np.array([np.nan] * 5)[:, None], np.arange(5))


# ----------------------------------------------------------------------------- H-score


@pytest.mark.parametrize(("n", "dim", "seed"), [(150, 10, 0), (60, 80, 1), (300, 5, 2)])
def test_h_score_matches_reference(n: int, dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, size=n)
    features = rng.normal(size=(n, dim)) + np.eye(5, dim)[labels]
    assert _rel_diff(h_score(features, labels), h_score_reference(features, labels)) < RTOL


def test_h_score_prefers_features_that_determine_labels() -> None:
    rng = np.random.default_rng(10)
    labels = rng.integers(0, 3, size=200)
    noise = rng.normal(size=(200, 6))
    informative = noise + 3.0 * np.eye(3, 6)[labels]
    assert h_score(informative, labels) > 2.0 * h_score(noise, labels)


def test_h_score_invariant_to_adding_a_constant() -> None:
    rng = np.random.default_rng(11)
    labels = rng.integers(0, 4, size=100)
    features = rng.normal(size=(100, 7))
    shifted = features + rng.normal(size=7) * 5.0
    assert h_score(shifted, labels) == pytest.approx(h_score(features, labels), rel=1e-8)


def test_h_score_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="features"):
        h_score(np.zeros(5), np.arange(5))
    with pytest.raises(ValueError, match="labels"):
        h_score(np.zeros((5, 2)), np.arange(5).astype(float))


def test_plain_h_score_saturates_with_fewer_samples_than_dimensions_shrinkage_does_not() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 4)  # 40 labelled images, 64-dim features: a few-label budget
    scores = []
    for signal in (0.0, 0.5, 2.0):
        f = rng.normal(size=(40, 64)) + np.eye(10)[y] @ rng.normal(size=(10, 64)) * signal
        assert h_score(f, y) == pytest.approx(9.0)  # C - 1 whatever the features
        scores.append(h_score(f, y, shrinkage=True))
    assert scores[0] < 1.0 < scores[1] < scores[2] < 9.0


def test_shrinkage_h_score_approaches_the_plain_one_with_many_samples() -> None:
    rng = np.random.default_rng(1)
    y = np.arange(4000) % 4
    f = rng.normal(size=(4000, 6)) + np.eye(4)[y] @ rng.normal(size=(4, 6))
    assert h_score(f, y, shrinkage=True) == pytest.approx(h_score(f, y), rel=0.01)
