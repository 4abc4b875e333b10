"""Arms of a transfer experiment: how a target model is initialised, frozen and trained.

An arm copies the first ``init_groups`` layer groups from the source model (the rest and the head
start from a seeded random init), freezes the first ``settings.freeze_groups`` groups and trains.
The five standard arms are settings of these two numbers (G = number of groups):

=============  ===========  =============  =====================================================
arm            init_groups  freeze_groups
=============  ===========  =============  =====================================================
scratch        0            0              no transfer (the baseline)
linear_probe   G            G              features frozen, new head only
freeze_k       G            k              Yosinski et al. 2014's frozen transfer, rest fine-tuned
finetune       G            0              everything fine-tuned
l2sp           G            0              fine-tuned with L2-SP (Li et al., ICML 2018)
=============  ===========  =============  =====================================================

What an arm *optimises* is its list of objectives (:mod:`pipeline.objectives`): cross-entropy on
the labelled target by default, plus L2-SP for ``l2sp``, a domain discriminator for DANN, ...

Yosinski et al.'s layer-wise protocol is the same machinery with ``init_groups = k``:
"AnB" freezes those k groups, "AnB+" fine-tunes everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.models.grouped import GroupedNet
from pipeline.models.weights import load_into
from pipeline.objectives import Objective
from pipeline.objectives.cross_entropy import CrossEntropy
from pipeline.transfer.settings import FitSettings

ModelFactory = Callable[[int], GroupedNet]
ObjectivesFactory = Callable[[], dict[str, Objective]]


def cross_entropy_only() -> dict[str, Objective]:
    """The default objective: cross-entropy on the labelled target."""
    return {"ce": CrossEntropy()}


@dataclass(frozen=True)
class Arm:
    """One arm: a name, how many source groups it copies, what it optimises and how.

    Attributes:
        name: Arm name (``scratch``, ``freeze_k``, ...).
        init_groups: Leading layer groups copied from the source model.
        settings: Optimisation settings (its seed included).
        objectives: Makes the arm's loss terms, fresh for every training run.
        recipe: The resolved settings and objective configs as plain values (for logging and
            for telling when two arms train the same model).
    """

    name: str
    init_groups: int
    settings: FitSettings
    objectives: ObjectivesFactory = field(default=cross_entropy_only, compare=False)
    recipe: dict = field(default_factory=dict, compare=False)

    @property
    def uses_source(self) -> bool:
        """Whether the arm starts from source weights (else it is a no-transfer baseline)."""
        return self.init_groups > 0

    def fingerprint(self, groups: int) -> str:
        """What determines the trained model: equal fingerprints, same model (e.g. ``freeze_k``
        at k = 0 and ``finetune``). Learning rates of frozen groups do not count."""
        import json

        recipe = {**self.settings.as_dict(), "init_groups": self.init_groups}
        recipe["objectives"] = self.recipe.get("objectives")
        if self.settings.freeze_groups >= groups:
            recipe.pop("backbone_lr", None)
            recipe.pop("lr_decay", None)
        return json.dumps(recipe, sort_keys=True, default=str)


def init_model(
    factory: ModelFactory,
    num_classes: int,
    *,
    seed: int,
    source_state: dict[str, torch.Tensor] | None,
    init_groups: int,
    source_path: Path | str = "source weights",
) -> GroupedNet:
    """A fresh model for ``num_classes`` with its first ``init_groups`` groups from the source.

    The random init depends on ``seed`` only, so two arms with the same seed share the init of
    every part they do not copy from the source (paired comparison).
    """
    torch.manual_seed(seed)
    model = factory(num_classes)
    if init_groups and source_state is None:
        raise ValueError("init_groups > 0 needs source weights")
    for i in range(init_groups):
        load_into(model, source_state, Path(source_path), prefix=f"groups.{i}.")
    return model
