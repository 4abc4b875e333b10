"""Domain-similarity scores: proxy A-distance and maximum mean discrepancy.

Proxy A-distance (PAD): Ben-David, Blitzer, Crammer and Pereira, "Analysis of Representations for
Domain Adaptation", NeurIPS 2007; Ben-David et al., "A theory of learning from different
domains", Machine Learning 2010. A domain classifier (source = 0, target = 1) is trained on half of
the pooled sample and its test error ``eps`` on the other half gives

    PAD = 2 (1 - 2 eps),   clipped to [0, 2].

PAD near 2 means the domains are linearly separable (very different); near 0 means a linear
classifier cannot tell them apart.

Unbiased MMD^2: Gretton, Borgwardt, Rasch, Schölkopf and Smola, "A Kernel Two-Sample Test", JMLR
2012, eq. (3). For samples ``x`` (m, d), ``y`` (n, d) and kernel ``k``

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
              - 2/(mn) sum_{i, j} k(x_i, y_j),

with the Gaussian RBF kernel ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))``. By default ``sigma``
is the median pairwise Euclidean distance of the pooled sample (median heuristic). The unbiased
estimate can be slightly negative when the distributions are equal.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist, squareform
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _check_samples(
    x: np.ndarray, y: np.ndarray, x_name: str, y_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validate two samples of shape (m, d) and (n, d) with at least two rows each.

    Args:
        x: First sample, shape (m, d).
        y: Second sample, shape (n, d).
        x_name: Argument name of ``x`` for error messages.
        y_name: Argument name of ``y`` for error messages.

    Returns:
        Both samples as float64 arrays.

    Raises:
        ValueError: If a sample is not a finite 2-D array with >= 2 rows or the widths differ.
    """
    arrays = []
    for value, name in ((x, x_name), (y, y_name)):
        arr = np.asarray(value)
        if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] == 0:
            raise ValueError(
                f"{name} must be a 2-D array of shape (n_samples, n_features) with at least "
                f"2 samples, got shape {arr.shape}"
            )
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be finite (no NaN or inf)")
        arrays.append(arr)
    if arrays[0].shape[1] != arrays[1].shape[1]:
        raise ValueError(
            f"{x_name} and {y_name} must have the same number of features, got "
            f"{arrays[0].shape[1]} and {arrays[1].shape[1]}"
        )
    return arrays[0], arrays[1]


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """Estimate the proxy A-distance between two domains with a linear domain classifier.

    The pooled sample is split in half, stratified by domain; a standardised logistic
    regression is trained on one half and its error ``eps`` measured on the other.

    Args:
        source: Source-domain features, shape (m, d), m >= 2.
        target: Target-domain features, shape (n, d), n >= 2.
        seed: Seed of the train/test split.

    Returns:
        PAD in [0, 2]: near 2 for separable domains, near 0 for indistinguishable ones.

    Raises:
        ValueError: If the inputs are not finite 2-D arrays with >= 2 rows and equal widths.
    """
    src, tgt = _check_samples(source, target, "source", "target")
    data = np.concatenate([src, tgt])
    domain = np.concatenate([np.zeros(src.shape[0], dtype=int), np.ones(tgt.shape[0], dtype=int)])
    x_train, x_test, d_train, d_test = train_test_split(
        data, domain, test_size=0.5, stratify=domain, random_state=seed
    )
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    classifier.fit(x_train, d_train)
    error = float(np.mean(classifier.predict(x_test) != d_test))
    return float(np.clip(2.0 * (1.0 - 2.0 * error), 0.0, 2.0))


def _median_bandwidth(sq_dists: np.ndarray) -> float:
    """Median heuristic: median pairwise distance, or 1.0 if that median is 0.

    Args:
        sq_dists: Condensed pairwise squared distances (as returned by ``pdist``).

    Returns:
        The RBF bandwidth sigma.
    """
    median = float(np.median(np.sqrt(sq_dists)))
    return median if median > 0 else 1.0


def _pooled_kernel(x: np.ndarray, y: np.ndarray, bandwidth: float | None) -> np.ndarray:
    """RBF kernel matrix of the pooled sample ``[x; y]`` with a zeroed diagonal.

    Args:
        x: First sample, shape (m, d).
        y: Second sample, shape (n, d).
        bandwidth: RBF sigma; the median heuristic on the pooled sample when None.

    Returns:
        Kernel matrix of shape (m + n, m + n) whose diagonal is 0 (only i != j terms are used).

    Raises:
        ValueError: If ``bandwidth`` is given and not a positive finite number.
    """
    if bandwidth is not None and not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a positive finite number or None, got {bandwidth}")
    sq_dists = pdist(np.concatenate([x, y]), "sqeuclidean")
    sigma = _median_bandwidth(sq_dists) if bandwidth is None else float(bandwidth)
    return squareform(np.exp(-sq_dists / (2.0 * sigma**2)))


def _mmd2_from_membership(kernel: np.ndarray, in_x: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 for one or more splits of the pooled sample.

    Args:
        kernel: Pooled kernel matrix with zero diagonal, shape (N, N).
        in_x: Membership of the first sample, float 0/1 array of shape (P, N); every row has
            the same number m of ones.

    Returns:
        MMD^2_u for each row, shape (P,).
    """
    in_y = 1.0 - in_x
    m = in_x[0].sum()
    n = in_y[0].sum()
    kx = in_x @ kernel  # (P, N); kernel is symmetric
    sum_xx = np.einsum("pn,pn->p", kx, in_x)
    sum_xy = np.einsum("pn,pn->p", kx, in_y)
    sum_yy = np.einsum("pn,pn->p", in_y @ kernel, in_y)
    return sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2.0 * sum_xy / (m * n)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD with a Gaussian RBF kernel (Gretton et al. 2012, eq. 3).

    Args:
        x: First sample, shape (m, d), m >= 2.
        y: Second sample, shape (n, d), n >= 2.
        bandwidth: RBF sigma in ``exp(-||a - b||^2 / (2 sigma^2))``; when None, the median
            pairwise distance of the pooled sample.

    Returns:
        MMD^2_u (near 0, possibly slightly negative, for equal distributions).

    Raises:
        ValueError: If the samples are not finite 2-D arrays with >= 2 rows and equal widths, or
            ``bandwidth`` is not positive.
    """
    x, y = _check_samples(x, y, "x", "y")
    kernel = _pooled_kernel(x, y, bandwidth)
    in_x = np.zeros((1, kernel.shape[0]))
    in_x[0, : x.shape[0]] = 1.0
    return float(_mmd2_from_membership(kernel, in_x)[0])


def mmd_permutation_test(
    x: np.ndarray,
    y: np.ndarray,
    n_permutations: int = 200,
    seed: int = 0,
    bandwidth: float | None = None,
) -> tuple[float, float]:
    """Permutation two-sample test on the unbiased MMD^2.

    The pooled kernel matrix (and the bandwidth) is computed once; each permutation reassigns
    the pooled samples to two groups of the original sizes and all permutations are evaluated
    with matrix products.

    Args:
        x: First sample, shape (m, d), m >= 2.
        y: Second sample, shape (n, d), n >= 2.
        n_permutations: Number of random permutations, >= 1.
        seed: Seed of the permutations.
        bandwidth: RBF sigma; median heuristic on the pooled sample when None.

    Returns:
        ``(mmd2, p_value)`` with ``p_value = (1 + #{perm >= observed}) / (1 + n_permutations)``.

    Raises:
        ValueError: If the samples are invalid, ``bandwidth`` is not positive, or
            ``n_permutations`` is not a positive integer.
    """
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int | np.integer):
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations}")
    x, y = _check_samples(x, y, "x", "y")
    kernel = _pooled_kernel(x, y, bandwidth)
    total, m = kernel.shape[0], x.shape[0]
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((n_permutations, total)), axis=1)  # random permutations
    in_x = np.zeros((n_permutations + 1, total))
    in_x[0, :m] = 1.0  # observed split
    np.put_along_axis(in_x[1:], order[:, :m], 1.0, axis=1)
    stats = _mmd2_from_membership(kernel, in_x)
    observed = float(stats[0])
    p_value = (1.0 + np.sum(stats[1:] >= observed)) / (1.0 + n_permutations)
    return observed, float(p_value)
