"""Logarithm of Maximum Evidence (LogME).

You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021 (fixed-point solver from You et al., "Ranking and Tuning Pre-trained Models:
A New Paradigm for Exploiting Model Hubs", JMLR 2022 / arXiv:2110.10545).

For features ``F`` (n, D) and, for each class ``c``, the one-hot target ``y = 1[labels == c]``,
a Bayesian linear model ``y ~ N(F w, 1/beta)`` with prior ``w ~ N(0, 1/alpha)`` has log evidence

    L(alpha, beta) = D/2 log alpha + n/2 log beta - n/2 log(2 pi)
                     - beta/2 ||F m - y||^2 - alpha/2 ||m||^2 - 1/2 log|A|,
    A = alpha I + beta F^T F,   m = beta A^{-1} F^T y.

With ``F = U diag(s) V^T``, ``sigma = s^2``, ``x = U^T y`` and ``t = alpha / beta`` the fixed
point iteration is

    gamma = sum_j sigma_j / (sigma_j + t)
    alpha <- gamma / ||m||^2,    ||m||^2 = sum_j sigma_j x_j^2 / (t + sigma_j)^2
    beta  <- (n - gamma) / ||F m - y||^2,
             ||F m - y||^2 = sum_j x_j^2 / (1 + sigma_j / t)^2 + (||y||^2 - ||x||^2)

LogME is the maximised evidence divided by n, averaged over the classes.

This module reproduces the authors' reference code (``thuml/LogME``, ``LogME._fit_fixed_point``)
number for number, including where it departs from the formulas above:

* ``alpha``/``beta`` start at 1, denominators get ``+ 1e-5``, at most 11 iterations, stop when
  ``|t_new - t| / t <= 1e-3``;
* the returned evidence combines the *updated* ``alpha, beta`` with ``||m||^2`` and
  ``||F m - y||^2`` computed from the *previous* ``t``;
* ``log|A|`` is summed over the ``k = min(n, D)`` (numerical-rank, for n > D) singular values
  only, so when ``D > k`` the ``(D - k) log alpha`` part of ``log|A|`` is left out;
* the classes are ``0 .. max(labels)``; a class index with no sample still counts in the mean.

For n > D (full rank) the result agrees with the exact evidence of the formulas above to about
1e-5 relative. For D > n the missing ``-(D - n)/2 log alpha`` term makes the score larger than the
exact evidence (often positive): such scores match the reference code, not the exact maximum
evidence.
"""

from __future__ import annotations

import numpy as np

from pipeline.metrics._inputs import features_and_labels

_EPSILON = 1e-5  # added to the alpha and beta denominators, as in the reference code
_MAX_ITERATIONS = 11
_TOLERANCE = 1e-3  # relative change of t = alpha / beta
_RANK_THRESHOLD = 1e-10  # singular values of F at or below this are dropped when n > D


def _spectrum(F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors and singular values of ``F`` the way the reference code gets them.

    Args:
        F: Features, shape (n, D).

    Returns:
        ``u`` of shape (n, k) and ``s`` of shape (k,).
    """
    n, D = F.shape
    if n > D:  # SVD of the small D x D Gram matrix, then U = F V / s
        _, eig, vh = np.linalg.svd(F.T @ F)
        s = np.sqrt(eig)
        k = int(np.sum(s > _RANK_THRESHOLD))
        s = s[:k]
        return (F @ vh[:k].T) / s, s
    u, s, _ = np.linalg.svd(F, full_matrices=False)
    return u, s


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """Compute the LogME transferability score for classification.

    Every class is handled at once (one column per class); each column stops updating at its
    own convergence step, exactly like the per-class loop of the reference code.

    Args:
        features: Features of the target samples from the pre-trained model, shape (n, D).
        labels: Integer target labels in [0, C), shape (n,).

    Returns:
        The LogME score (mean over classes of the maximum log evidence per sample); higher is
        better.

    Raises:
        ValueError: If features are not a finite 2-D array or labels are not non-negative
            integers of the same length as features.
    """
    F, y = features_and_labels(features, labels)
    n, D = F.shape
    u, s = _spectrum(F)
    sigma = (s**2)[:, None]  # (k, 1)
    onehot = (y[:, None] == np.arange(int(y.max()) + 1)[None, :]).astype(np.float64)  # (n, C)
    x2 = (u.T @ onehot) ** 2  # (k, C)
    res_x2 = onehot.sum(axis=0) - x2.sum(axis=0)  # (C,): part of ||y||^2 outside span(U)

    n_classes = onehot.shape[1]
    alpha, beta = np.ones(n_classes), np.ones(n_classes)
    m2, res2 = np.zeros(n_classes), np.zeros(n_classes)
    active = np.ones(n_classes, dtype=bool)
    for _ in range(_MAX_ITERATIONS):
        t = alpha / beta
        gamma = (sigma / (sigma + t)).sum(axis=0)
        new_m2 = (sigma * x2 / (t + sigma) ** 2).sum(axis=0)
        new_res2 = (x2 / (1 + sigma / t) ** 2).sum(axis=0) + res_x2
        new_alpha = gamma / (new_m2 + _EPSILON)
        new_beta = (n - gamma) / (new_res2 + _EPSILON)
        converged = np.abs(new_alpha / new_beta - t) / t <= _TOLERANCE
        alpha = np.where(active, new_alpha, alpha)
        beta = np.where(active, new_beta, beta)
        m2 = np.where(active, new_m2, m2)
        res2 = np.where(active, new_res2, res2)
        active &= ~converged
        if not active.any():
            break

    evidence = (
        D / 2.0 * np.log(alpha)
        + n / 2.0 * np.log(beta)
        - 0.5 * np.log(alpha + beta * sigma).sum(axis=0)
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - n / 2.0 * np.log(2 * np.pi)
    )
    return float(np.mean(evidence / n))
