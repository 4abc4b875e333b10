"""Deep embedded validation (DEV): the source validation loss, importance-weighted to the target.

You, Wang, Long & Jordan, "Towards Accurate Model Selection in Deep Unsupervised Domain
Adaptation", ICML 2019. A domain classifier on the features estimates the density ratio
``w(x) = (n_s / n_t) p(target | x) / p(source | x)`` on the source validation split; the weighted
losses ``l_i = w_i * CE_i`` are combined with ``w`` as a control variate,

    DEV = mean(l) + eta * mean(w) - eta,   eta = -Cov(l, w) / Var(w),

an unbiased, lower-variance estimate of the target risk. The score is ``-DEV`` (higher is better).
The domain classifier is scikit-learn's logistic regression on standardised features (the paper
uses a small MLP; the linear one is cheap enough to fit every epoch and deterministic).

Hand-written because skada's ``DeepEmbeddedValidation`` is a scikit-learn scorer that re-splits
the source and re-runs the estimator; ours scores the outputs already computed each epoch.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F

from pipeline.selection.base import EpochOutputs, Validator


def dev_risk(losses: np.ndarray, weights: np.ndarray) -> float:
    """The control-variate estimate ``mean(l) + eta mean(w) - eta`` of You et al. (eq. 6)."""
    weighted = weights * losses
    var = float(np.var(weights, ddof=1))
    eta = 0.0 if var == 0 else -float(np.cov(weighted, weights)[0, 1]) / var
    return float(weighted.mean() + eta * weights.mean() - eta)


class DeepEmbeddedValidation(Validator):
    """Negative DEV risk from the source validation split and the target features.

    Args:
        seed: Seed of the domain classifier.
    """

    needs_source = True

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(self, out: EpochOutputs) -> float:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        train = out.source_train_features
        if train is None:
            train = out.source_features
        fs, ft = train.double().cpu().numpy(), out.target_features.double().cpu().numpy()
        x = np.concatenate([fs, ft])
        domain = np.r_[np.zeros(len(fs)), np.ones(len(ft))]
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        clf.fit(x, domain)
        p = clf.predict_proba(out.source_features.double().cpu().numpy())[:, 1]
        p = np.clip(p, 1e-6, 1 - 1e-6)
        weights = (len(fs) / len(ft)) * p / (1 - p)
        losses = F.cross_entropy(out.source_logits.double(), out.source_labels, reduction="none")
        return -dev_risk(losses.cpu().numpy(), weights)
