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


def test_images_too_small_for_the_backbone_blame_data_image_size_and_say_what_works():
    # the README's convnext_atto example at the default 16 px blamed model._target_
    from pipeline.models.timm_backbone import timm_backbone

    model = timm_backbone(num_classes=10, arch="convnext_atto", in_chans=3, small_input=False)
    before = _modes(model)
    with pytest.raises(ConfigError, match=r"^data\.image_size=16 is not allowed; .*32 does, 16"):
        check_input(model, (3, 16, 16), "pipeline.models.timm_backbone.timm_backbone")
    assert _modes(model) == before
    check_input(model, (3, 32, 32), "pipeline.models.timm_backbone.timm_backbone")
    # a fixed-size ViT: timm asserts the size (an AssertionError, a traceback before)
    vit = timm_backbone(num_classes=10, arch="vit_tiny_patch16_224", in_chans=3, small_input=False)
    with pytest.raises(ConfigError, match=r"^data\.image_size=16 .*224 does, 16 does not"):
        check_input(vit, (3, 16, 16), "pipeline.models.timm_backbone.timm_backbone")


def test_fit_trains_a_network_the_caller_left_in_eval_mode():
    # the mode is fit's to set: trainable BatchNorm layers update their statistics, frozen
    # groups keep theirs, whatever mode the network arrived in
    from pipeline.transfer.fit import fit
    from pipeline.transfer.settings import FitSettings

    torch.manual_seed(0)
    model = small_cnn(3).eval()
    bns = [
        next(m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)) for g in model.groups
    ]
    before = [bn.running_mean.clone() for bn in bns]
    x, y = torch.randn(12, 1, 16, 16) + 1.0, torch.arange(12) % 3
    settings = FitSettings(epochs=1, batch_size=4, head_lr=0.01, backbone_lr=0.01, freeze_groups=1)
    fit(model, (x, y), (x, y), settings, trainer_kwargs={"enable_progress_bar": False})
    assert torch.equal(bns[0].running_mean, before[0])
    assert all(
        not torch.equal(bn.running_mean, b) for bn, b in zip(bns[1:], before[1:], strict=True)
    )


def test_a_trials_seeds_share_its_arm_and_every_trial_gets_its_own_values():
    from omegaconf import OmegaConf

    from stages._build import trial_arm
    from tests.conftest import compose

    cfg = compose()
    before = OmegaConf.to_yaml(cfg)
    arm_for = trial_arm(cfg, 4)
    a = {"transfer.head_lr": 0.2, "transfer.freeze_groups": 1}
    b = {"transfer.head_lr": 0.03, "transfer.freeze_groups": 3}
    first, second = arm_for(a, 7), arm_for(a, 8)
    assert (first.settings.seed, second.settings.seed) == (7, 8)
    assert first.settings.head_lr == second.settings.head_lr == 0.2
    other = arm_for(b, 7)
    assert (other.settings.head_lr, other.settings.freeze_groups) == (0.03, 3)
    again = arm_for(a, 9)
    assert (again.settings.head_lr, again.settings.freeze_groups, again.settings.seed) == (
        0.2,
        1,
        9,
    )
    # a trial with fewer keys starts again from the config as given, not from the last trial
    arm_for(b, 7)
    only_lr = arm_for({"transfer.head_lr": 0.1}, 7)
    fresh = trial_arm(cfg, 4)({"transfer.head_lr": 0.1}, 7)
    assert fresh.settings.freeze_groups != 3
    assert only_lr.settings.as_dict() == fresh.settings.as_dict()
    assert first.settings.epochs == cfg.tune.epochs
    assert OmegaConf.to_yaml(cfg) == before  # the caller's config is never edited


def test_a_failed_trial_build_leaves_no_arm_behind():
    from stages._build import trial_arm
    from tests.conftest import compose

    arm_for = trial_arm(compose(), 4)
    good = {"transfer.freeze_groups": 1}
    assert arm_for(good, 0).settings.freeze_groups == 1
    with pytest.raises(ConfigError, match="freeze_groups"):
        arm_for({"transfer.freeze_groups": 99}, 0)
    assert arm_for(good, 1).settings.freeze_groups == 1
