"""Checks the stages run before any work must leave the model as they found it."""

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.models.small_cnn import small_cnn
from stages._build import check_input


def _modes(model: torch.nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


@pytest.mark.parametrize("mixed", [False, True])
def test_the_input_probe_leaves_every_module_in_its_mode(mixed):
    # Lightning does not call train() on submodules at the start of fit: a probe that left the
    # model in eval mode made pretraining run BatchNorm on its initial statistics
    model = small_cnn(10)
    if mixed:
        model.groups[0].eval()
    before = _modes(model)
    assert any(before)
    check_input(model, (1, 16, 16), "pipeline.models.small_cnn.small_cnn")
    assert _modes(model) == before


def test_the_input_probe_names_a_resolution_the_backbone_cannot_take():
    model = small_cnn(10)
    before = _modes(model)
    with pytest.raises(ConfigError, match=r"model\._target_.*shape \(3, 16, 16\)"):
        check_input(model, (3, 16, 16), "pipeline.models.small_cnn.small_cnn")
    assert _modes(model) == before
