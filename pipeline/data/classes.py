"""Source and target class sets matched by name, for runs where both domains are one task.

Transductive methods (a source head applied to target images, domain-adversarial training,
accuracy of the source model on the target) need label ``i`` to mean the same class in both
domains. Loaders number classes their own way (torchvision's MNIST calls its classes
"0 - zero", ...; an ``ImageFolder`` sorts folder names, so "10" comes before "2"), so the target's
labels are renumbered to the source's order by class *name*, and differing names are an error.
"""

from __future__ import annotations

import numpy as np

from pipeline.data.domain import Domain, Split
from pipeline.errors import ConfigError


def align_classes(source: Domain, target: Domain, key: str = "data.match_classes") -> Domain:
    """``target`` with labels renumbered so that label i names ``source.classes[i]``.

    Raises:
        ConfigError: The two domains do not have the same set of class names.
    """
    if sorted(source.classes) != sorted(target.classes) or len(set(source.classes)) != len(
        source.classes
    ):
        only_source = sorted(set(source.classes) - set(target.classes))
        only_target = sorted(set(target.classes) - set(source.classes))
        raise ConfigError(
            key,
            True,
            f"false, or a source ({source.name}) and target ({target.name}) with the same class "
            f"names: only in the source {only_source}, only in the target {only_target}",
        )
    if source.classes == target.classes:
        return target
    order = np.asarray([source.classes.index(c) for c in target.classes], np.int64)
    splits = {k: Split(v.x, None if v.y is None else order[v.y]) for k, v in target.splits.items()}
    recipe = {**target.recipe, "classes_matched_to": source.name}
    return Domain(target.name, source.classes, splits, recipe, target.modality)
