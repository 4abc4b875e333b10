"""H-score.

Bao, Li, Huang, Wang, Zheng and Tong, "An Information-Theoretic Approach to Transferability in
Task Transfer Learning", ICIP 2019.

For features ``f`` (n, D) and labels ``y`` the score is

    H(f) = tr( cov(f)^+ cov(E[f | y]) )

where ``cov(f)`` is the covariance of the centred features, ``E[f | y]`` replaces every sample by
its class mean, and ``^+`` is the Moore-Penrose pseudo-inverse. Both covariances use the same
``1/n`` normalisation, so the normalisation cancels. With centred class means ``mu_y`` and class
frequencies ``p_y`` the between-class covariance is ``sum_y p_y mu_y mu_y^T``, hence

    H(f) = sum_y p_y mu_y^T cov(f)^+ mu_y.

Higher is better; the score is invariant to translating the features.

With fewer samples than feature dimensions (a few labels per class) ``cov(f)`` is singular and the
plain score saturates at its maximum C - 1 for any network. ``shrinkage=True`` computes the
shrinkage H-score of Ibrahim, Ponomareva & Mazumder, "Newer is not always better: Rethinking
transferability metrics, their peculiarities, stability and performance", ECML PKDD 2022:

    H_a(f) = tr( cov_a(f)^-1 (1 - a) cov(E[f | y]) ),  cov_a = (1 - a) cov(f) + a (tr cov / D) I

with the Ledoit-Wolf shrinkage ``a`` (sklearn's ``LedoitWolf``): features that are mostly noise
get ``a`` near 1 and a score near 0 instead of a large one.
"""

from __future__ import annotations

import numpy as np

from pipeline.metrics._inputs import features_and_labels


def _pinv_rcond(n_samples: int, n_features: int) -> float:
    """Relative cut-off for the pseudo-inverse of a covariance estimated from ``n_samples``.

    Eigenvalues below ``rcond * max eigenvalue`` are treated as zero, the same default as
    ``numpy.linalg.matrix_rank`` (``max(n, D) * machine epsilon``).

    Args:
        n_samples: Number of samples n.
        n_features: Feature dimension D.

    Returns:
        The relative cut-off.
    """
    return max(n_samples, n_features) * float(np.finfo(np.float64).eps)


def h_score(features: np.ndarray, labels: np.ndarray, shrinkage: bool = False) -> float:
    """Compute the H-score transferability score.

    Args:
        features: Features of the target samples, shape (n, D).
        labels: Integer target labels, shape (n,).
        shrinkage: Estimate cov(f) with Ledoit-Wolf shrinkage (for n not much larger than D).

    Returns:
        The H-score (>= 0, higher is better).

    Raises:
        ValueError: If features are not a finite 2-D array or labels are not non-negative
            integers of the same length as features.
    """
    f, y = features_and_labels(features, labels)
    n, D = f.shape
    f = f - f.mean(axis=0)
    _, y_idx, counts = np.unique(y, return_inverse=True, return_counts=True)
    class_means = np.zeros((counts.shape[0], D))
    np.add.at(class_means, y_idx, f)
    class_means /= counts[:, None]  # (C, D), centred because f is centred
    scale = 1.0
    if shrinkage:
        from sklearn.covariance import LedoitWolf

        lw = LedoitWolf(assume_centered=True).fit(f)
        cov, scale = lw.covariance_, 1.0 - float(lw.shrinkage_)
    else:
        cov = f.T @ f / n
    eigvals, eigvecs = np.linalg.eigh(cov)  # cov(f) = V diag(l) V^T
    keep = eigvals > _pinv_rcond(n, D) * max(float(eigvals.max()), 0.0)
    projected = class_means @ eigvecs[:, keep]  # (C, r)
    weights = counts / n  # p_y
    return scale * float(np.sum(weights[:, None] * projected**2 / eigvals[keep]))
