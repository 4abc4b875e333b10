"""Vectorised ensembles: training S members together equals training each one alone."""

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from pipeline.data.store import load_domain
from pipeline.models.grouped import GroupedNet
from pipeline.models.small_cnn import small_cnn
from pipeline.objectives.cross_entropy import CrossEntropy
from pipeline.transfer.arms import init_model
from pipeline.transfer.fit import Member, fit, fit_ensemble
from pipeline.transfer.prefix_cache import PrefixCache
from pipeline.transfer.settings import FitSettings
from pipeline.transfer.source import SourceModel
from pipeline.transfer.train import TargetTask, train_arm, train_arms
from pipeline.transfer.widen import WidenError, check_wide, link, widen
from stages import _build as build
from tests.conftest import compose

QUIET = {"enable_progress_bar": False}
SEEDS = (0, 1, 2)


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def _source_state():
    torch.manual_seed(123)
    return small_cnn(10, width=8).state_dict()


def _model(seed, factory=lambda c: small_cnn(c, width=8)):
    return init_model(factory, 10, seed=seed, source_state=_source_state(), init_groups=4)


def _settings(seed, k, **kw):
    # lrs differ per seed: one optimiser holds every member's own groups
    lr = 0.02 * (1 + seed / 4)
    return FitSettings(
        epochs=3, batch_size=8, head_lr=0.05, backbone_lr=lr, freeze_groups=k, seed=seed, **kw
    )


def _max_diff(a: nn.Module, b: nn.Module) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


@pytest.mark.parametrize(
    ("k", "vectorise", "trainer"),
    [
        (0, True, {}),
        (2, True, {}),  # cached frozen prefix, shared validation prefix
        (4, True, {}),  # linear probe on cached features
        (0, False, {}),  # members one after another in one loop: bitwise the same
        (0, True, {"gradient_clip_val": 0.05}),  # clipped per member, not over the ensemble
    ],
)
def test_ensemble_training_equals_training_each_member_alone(k, vectorise, trainer):
    val = _data(40, 99)
    train = {s: _data(24, 10 + s) for s in SEEDS}
    kw = {**QUIET, **trainer}
    alone = [fit(_model(s), train[s], val, _settings(s, k), trainer_kwargs=kw) for s in SEEDS]
    members = [Member(_model(s), train[s], _settings(s, k)) for s in SEEDS]
    together = fit_ensemble(members, val, trainer_kwargs=kw, vectorise=vectorise)
    for a, b in zip(alone, together, strict=True):
        assert a.best_epoch == b.best_epoch
        for key in ("train/loss", "val/loss", "val/acc"):
            torch.testing.assert_close(
                [h[key] for h in b.history], [h[key] for h in a.history], rtol=1e-5, atol=1e-6
            )
        # weights and BatchNorm statistics, member by member
        assert _max_diff(a.model, b.model) < (1e-5 if vectorise else 1e-12)
        assert a.cached_prefix == b.cached_prefix == (k > 0)


def test_frozen_groups_keep_the_source_statistics_in_every_member():
    val, k = _data(40, 99), 2
    members = [Member(_model(s), _data(24, 10 + s), _settings(s, k)) for s in SEEDS]
    results = fit_ensemble(members, val, trainer_kwargs=QUIET, prefix_caching=False)
    source = _source_state()
    for r in results:
        state = r.model.state_dict()
        assert not r.cached_prefix
        for key in ("groups.1.1.running_mean", "groups.1.1.running_var", "groups.0.0.weight"):
            assert torch.equal(state[key], source[key])
        assert not torch.equal(state["groups.2.1.running_mean"], source["groups.2.1.running_mean"])
    # members trained their own statistics, and got their own memory back after training
    a, b = (r.model.state_dict()["groups.3.1.running_var"] for r in results[:2])
    assert not torch.equal(a, b) and a.data_ptr() != b.data_ptr()


def test_each_member_logs_its_own_metrics_and_the_loop_logs_their_mean():
    class Sink:
        def __init__(self):
            self.rows = []

        def log_metrics(self, metrics, step=None):
            self.rows.append(dict(metrics))

        def finalize(self, status):
            self.status = status

    sinks = [Sink() for _ in SEEDS]
    members = [
        Member(_model(s), _data(24, 10 + s), _settings(s, 0), logger=sink)
        for s, sink in zip(SEEDS, sinks, strict=True)
    ]
    results = fit_ensemble(members, _data(40, 99), trainer_kwargs=QUIET)
    for sink, result in zip(sinks, results, strict=True):
        assert [r["val/acc"] for r in sink.rows] == [h["val/acc"] for h in result.history]
        assert sink.status == "success"


class _ChannelFlip(nn.Module):
    """Reverses the channel order: mixes members' channels once they are packed side by side."""

    def forward(self, x):
        return x.flip(1)


def _flipping_net(num_classes):
    groups = [
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
        nn.Sequential(_ChannelFlip(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU()),
    ]
    return GroupedNet(groups, 8, num_classes)


def test_a_forward_that_mixes_channels_is_caught_and_trains_member_by_member(caplog):
    torch.manual_seed(0)
    nets = [_flipping_net(10) for _ in SEEDS]
    with pytest.raises(WidenError, match="layer groups.1.0 .*_ChannelFlip"):
        widen(nets)
    nets[0].groups[1][0] = nets[1].groups[1][0] = nets[2].groups[1][0] = nn.Identity()
    wide = widen(nets)
    link(wide)
    check_wide(wide, nets, _data(4, 0)[0])  # supported layers: the wide net matches

    class Rolled(GroupedNet):  # custom forward code that mixes channels: only the check sees it
        def forward_features(self, x, start=0):
            return super().forward_features(x, start).roll(1, dims=1)

    def rolled(seed):
        torch.manual_seed(seed)
        net = small_cnn(10, width=4)
        return Rolled(list(net.groups), net.feature_dim, 10)

    val = _data(40, 99)
    settings = [_settings(s, 0) for s in SEEDS]
    alone = [
        fit(rolled(s), _data(24, s), val, st, trainer_kwargs=QUIET)
        for s, st in zip(SEEDS, settings, strict=True)
    ]
    with caplog.at_level(logging.INFO, logger="pipeline.transfer.fit"):
        members = [
            Member(rolled(s), _data(24, s), st) for s, st in zip(SEEDS, settings, strict=True)
        ]
        together = fit_ensemble(members, val, trainer_kwargs=QUIET)
    assert "mixes the members' channels; its members run one after another" in caplog.text
    for a, b in zip(alone, together, strict=True):
        assert _max_diff(a.model, b.model) == 0.0


def test_train_arms_equals_train_arm_per_arm_and_groups_what_can_share_a_loop(
    pretrained: Path, caplog
):
    cfg = compose()
    target = load_domain(pretrained / "outputs/prepare/target")
    source = SourceModel.load(pretrained / "outputs/pretrain/model")
    factory = build.model_factory(cfg)
    task = TargetTask(target, 1)
    arms = [build.arm(cfg, name, 4, s) for name in ("freeze_k", "l2sp", "scratch") for s in (0, 1)]

    class Noisy(CrossEntropy):
        unvectorised = "draws random numbers"

    noisy = build.arm(cfg, "finetune", 4, 0)
    import dataclasses

    arms.append(dataclasses.replace(noisy, name="noisy", objectives=lambda: {"ce": Noisy()}))
    kw = {"trainer_kwargs": QUIET}
    alone = [train_arm(a, task, factory, source, cache=PrefixCache(), **kw) for a in arms]
    with caplog.at_level(logging.INFO, logger="pipeline.transfer.train"):
        together = train_arms(arms, task, factory, source, cache=PrefixCache(), **kw)
    assert (
        "arm noisy, seed 0 trains alone: objective ce (Noisy) draws random numbers" in caplog.text
    )
    for arm, a, b in zip(arms, alone, together, strict=True):
        assert a.best_epoch == b.best_epoch, arm.name
        torch.testing.assert_close(
            [h["val/acc"] for h in b.history], [h["val/acc"] for h in a.history]
        )
        assert _max_diff(a.model, b.model) < 1e-4, arm.name  # L2-SP pulls each to its own w0
