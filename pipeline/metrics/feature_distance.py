"""Domain distance of a model's features: did adaptation move the domains closer?

Proxy A-distance and unbiased MMD^2 (:mod:`pipeline.metrics.domain`) between the pooled features a
network computes on a source sample and on a target sample. Domain adaptation methods aim to make
these small (Ganin et al., JMLR 2016, report PAD before and after DANN); the transductive report
shows them for the source model and for every adapted model.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.metrics.domain import mmd2_unbiased, proxy_a_distance
from pipeline.models.grouped import GroupedNet
from pipeline.models.predict import predict_logits


def feature_distances(
    model: GroupedNet,
    source: torch.Tensor,
    target: torch.Tensor,
    max_samples: int = 600,
    seed: int = 0,
) -> dict[str, float]:
    """``{"pad": ..., "mmd2": ...}`` of ``model``'s pooled features on seeded samples of at most
    ``max_samples`` rows of ``source`` and ``target`` inputs."""
    rng = np.random.default_rng(seed)

    def sample(x: torch.Tensor) -> np.ndarray:
        pick = np.sort(rng.permutation(len(x))[: min(max_samples, len(x))])
        return predict_logits(model, x[torch.from_numpy(pick)], features=True).double().numpy()

    fs, ft = sample(source), sample(target)
    return {"pad": proxy_a_distance(fs, ft, seed=seed), "mmd2": mmd2_unbiased(fs, ft)}
