"""Freezing the first k layer groups: no gradient, frozen BatchNorm statistics."""

import pytest
import torch

from pipeline.data.images.transforms import RandomShift
from pipeline.errors import ConfigError
from pipeline.models.small_cnn import small_cnn
from pipeline.transfer.fit import fit
from pipeline.transfer.freezing import freeze, resolve_depth
from pipeline.transfer.settings import FitSettings


def _data(n: int = 40, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _params(model) -> set[str]:
    return {name for name, _ in model.named_parameters()}


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


def _changed(before, after, prefix, names):
    """Whether any of ``names`` under ``prefix`` changed (weights and BatchNorm statistics are
    told apart: statistics of a group left in train mode drift without any update)."""
    keys = [k for k in before if k.startswith(prefix) and k in names]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_frozen_groups_get_no_update_and_keep_bn_running_stats(k):
    model, before, after = _train(k)
    params = _params(model)
    stats = {n for n in before if "running" in n}
    for i in range(model.num_groups):
        g = f"groups.{i}."
        assert _changed(before, after, g, params) == (i >= k), f"weights of group {i}, k={k}"
        assert _changed(before, after, g, stats) == (i >= k), f"BN statistics of group {i}, k={k}"
    assert all(not p.requires_grad for p in model.groups[k - 1].parameters())
    assert all(p.requires_grad for p in model.groups[k].parameters())


@pytest.mark.parametrize("k", [0, 1, 3, 4])
def test_freeze_k_stops_gradients_and_training_mode_in_exactly_k_groups(k):
    model = small_cnn(10, width=4).train()
    freeze(model, k)
    assert [g.training for g in model.groups] == [i >= k for i in range(4)]
    freeze(model, 4 - k)  # a previous depth's gradients are undone
    freeze(model, k)
    grads = [all(p.requires_grad for p in g.parameters()) for g in model.groups]
    assert grads == [i >= k for i in range(4)]
    assert all(p.requires_grad for p in model.head.parameters())


def test_k0_fine_tunes_every_group_and_kG_is_a_linear_probe():
    model, before, after = _train(0)
    params = _params(model)
    assert all(_changed(before, after, f"groups.{i}.", params) for i in range(model.num_groups))
    model, before, after = _train(model.num_groups)
    assert not _changed(before, after, "groups.", set(before))
    assert _changed(before, after, "head.", params)


def test_per_group_learning_rates_decay_towards_the_input():
    model = small_cnn(10, width=8)
    groups = model.param_groups(1, head_lr=1.0, backbone_lr=0.1, lr_decay=0.5)
    assert [g["name"] for g in groups] == ["group1", "group2", "group3", "head"]
    assert [g["lr"] for g in groups] == pytest.approx([0.025, 0.05, 0.1, 1.0])


@pytest.mark.parametrize("bad", [-1, 5, "two", "ALL", 2.5, True, None])
def test_out_of_range_freeze_depth_names_the_key(bad):
    with pytest.raises(ConfigError) as err:
        resolve_depth(bad, 4, "transfer.freeze_groups")
    assert str(err.value) == (
        f"transfer.freeze_groups={bad!r} is not allowed; expected an integer in [0, 4] or 'all' "
        "(the backbone has 4 layer groups)"
    )


@pytest.mark.parametrize(("value", "depth"), [(0, 0), (1, 1), (4, 4), ("all", 4)])
def test_depths_from_0_to_G_and_all_resolve_to_themselves(value, depth):
    assert resolve_depth(value, 4, "k") == depth
