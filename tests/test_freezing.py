"""Freezing the first k layer groups: no gradient, frozen BatchNorm statistics."""

import pytest
import torch

from pipeline.data.images.transforms import RandomShift
from pipeline.errors import ConfigError
from pipeline.models.small_cnn import small_cnn
from pipeline.transfer.fit import fit
from pipeline.transfer.freezing import resolve_depth
from pipeline.transfer.settings import FitSettings


def _data(n: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train(k: int, shift: int = 1):
    torch.manual_seed(0)
    model = small_cnn(10, width=8)
    before = _snapshot(model)
    # augmentation disables prefix caching, so the frozen groups really run inside training
    settings = FitSettings(
        epochs=2,
        batch_size=8,
        head_lr=0.1,
        backbone_lr=0.1,
        freeze_groups=k,
        augment=RandomShift(shift),
    )
    fit(model, _data(), _data(20, 1), settings, trainer_kwargs={"enable_progress_bar": False})
    return model, before, _snapshot(model)


def _changed(before, after, prefix):
    return any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_frozen_groups_get_no_update_and_keep_bn_running_stats(k):
    model, before, after = _train(k)
    for i in range(model.num_groups):
        assert _changed(before, after, f"groups.{i}.") == (i >= k), f"group {i} with k={k}"
    # running_mean/var and num_batches_tracked of frozen BatchNorms are untouched
    frozen_bn = [n for n in before if n.startswith("groups.0.") and "running" in n]
    assert frozen_bn and all(torch.equal(before[n], after[n]) for n in frozen_bn)
    assert all(not p.requires_grad for p in model.groups[0].parameters())


def test_k0_fine_tunes_every_group_and_kG_is_a_linear_probe():
    model, before, after = _train(0)
    assert all(_changed(before, after, f"groups.{i}.") for i in range(model.num_groups))
    model, before, after = _train(model.num_groups)
    assert not _changed(before, after, "groups.")
    assert _changed(before, after, "head.")


def test_per_group_learning_rates_decay_towards_the_input():
    model = small_cnn(10, width=8)
    groups = model.param_groups(1, head_lr=1.0, backbone_lr=0.1, lr_decay=0.5)
    assert [g["name"] for g in groups] == ["group1", "group2", "group3", "head"]
    assert [g["lr"] for g in groups] == pytest.approx([0.025, 0.05, 0.1, 1.0])


@pytest.mark.parametrize("bad", [-1, 5, "two", 2.5, True])
def test_out_of_range_freeze_depth_names_the_key(bad):
    with pytest.raises(ConfigError, match=r"transfer\.freeze_groups.*\[0, 4\]"):
        resolve_depth(bad, 4, "transfer.freeze_groups")
    assert resolve_depth("all", 4, "k") == 4
