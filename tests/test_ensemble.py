"""Vectorised ensembles: training S members together equals training each one alone."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from torch import nn

from pipeline.data.images.transforms import RandomShift
from pipeline.data.store import load_domain
from pipeline.models.grouped import GroupedNet
from pipeline.models.small_cnn import small_cnn
from pipeline.objectives.cross_entropy import CrossEntropy
from pipeline.objectives.dann import DANN
from pipeline.transfer import fit as fit_lib
from pipeline.transfer import module as module_lib
from pipeline.transfer.arms import Arm, init_model
from pipeline.transfer.fit import Member, fit, fit_ensemble
from pipeline.transfer.module import merge_equal_groups
from pipeline.transfer.prefix_cache import PrefixCache
from pipeline.transfer.settings import FitSettings
from pipeline.transfer.source import SourceModel
from pipeline.transfer.train import TargetTask, train_arm, train_arms
from pipeline.transfer.widen import WidenError, check_wide, link, widen
from stages import _build as build
from tests.conftest import DIVERGING_SCRATCH, compose
from tests.test_transfer import QUIET, _data, _source_state, _with_pool

SEEDS = (0, 1, 2)


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
    ("k", "vectorise", "trainer", "augment"),
    [
        (0, True, {}, None),
        (2, True, {}, None),  # cached frozen prefix, shared validation prefix
        (4, True, {}, None),  # linear probe on cached features
        (1, True, {}, RandomShift(1)),  # each member's own random shifts; frozen group runs
        (0, False, {}, None),  # members one after another in one loop: bitwise the same
        (0, True, {"gradient_clip_val": 0.05}, None),  # clipped per member, not over the ensemble
    ],
)
def test_ensemble_training_equals_training_each_member_alone(k, vectorise, trainer, augment):
    val = _data(40, 99)
    train = {s: _data(24, 10 + s) for s in SEEDS}
    kw = {**QUIET, **trainer}
    settings = {s: _settings(s, k, augment=augment) for s in SEEDS}
    alone = [fit(_model(s), train[s], val, settings[s], trainer_kwargs=kw) for s in SEEDS]
    members = [Member(_model(s), train[s], settings[s]) for s in SEEDS]
    together = fit_ensemble(members, val, trainer_kwargs=kw, vectorise=vectorise)
    for a, b in zip(alone, together, strict=True):
        assert a.best_epoch == b.best_epoch
        for key in ("train/loss", "val/loss", "val/acc"):
            torch.testing.assert_close(
                [h[key] for h in b.history], [h[key] for h in a.history], rtol=1e-5, atol=1e-6
            )
        # weights and BatchNorm statistics, member by member
        assert _max_diff(a.model, b.model) < (1e-5 if vectorise else 1e-12)
        assert a.cached_prefix == b.cached_prefix == (k > 0 and augment is None)


@pytest.mark.parametrize("k", [0, 2])
def test_domain_adaptation_streams_train_in_an_ensemble_as_alone(k):
    """Labelled source + unlabelled target streams (DANN), steps_per_epoch capping each epoch
    below a pass over the driver stream, and the last epoch kept (monitor None): main's
    single-network semantics, member by member."""
    val = _data(40, 99)
    streams = {
        s: {"source": _data(40, 20 + s), "unlabelled": (_data(24, 30 + s)[0], None)} for s in SEEDS
    }
    settings = {s: _settings(s, k, steps_per_epoch=2, monitor=None) for s in SEEDS}

    def terms():
        return {"ce": CrossEntropy("source"), "dann": DANN(hidden=16)}

    alone = []
    for s in SEEDS:
        model = _model(s)
        torch.manual_seed(1000 + s)  # the discriminator's init
        alone.append(
            fit(model, streams[s], val, settings[s], objectives=terms(), trainer_kwargs=QUIET)
        )
    members = []
    for s in SEEDS:
        model = _model(s)
        rng = torch.manual_seed(1000 + s).get_state()
        members.append(Member(model, streams[s], settings[s], terms(), rng_state=rng))
    together = fit_ensemble(members, val, trainer_kwargs=QUIET)
    for a, b in zip(alone, together, strict=True):
        assert a.best_epoch == b.best_epoch == 2  # the last epoch, not the best val/acc
        assert a.cached_prefix == b.cached_prefix == (k > 0)
        for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
            torch.testing.assert_close(
                [h[key] for h in b.history], [h[key] for h in a.history], rtol=1e-5, atol=1e-6
            )
        assert _max_diff(a.model, b.model) < 1e-5


@pytest.mark.parametrize(
    ("shape", "scale"), [((8, 10, 10), 1.0), ((3, 1, 2), 10.0), ((2, 3, 37), 3.0), ((5, 4, 7), 1.0)]
)
def test_one_cross_entropy_call_gives_every_member_its_own_gradient(shape, scale):
    b, s, k = shape
    g = torch.Generator().manual_seed(b * s * k)
    logits = (torch.randn(b, s, k, generator=g) * scale).requires_grad_()
    y = torch.randint(0, k, (b, s), generator=g)
    apart = torch.stack([nn.functional.cross_entropy(logits[:, i], y[:, i]) for i in range(s)])
    (grad_apart,) = torch.autograd.grad(apart.sum(), logits)
    together = CrossEntropy.of_members(logits, y)
    (grad_together,) = torch.autograd.grad(together.sum(), logits)
    assert torch.equal(grad_together, grad_apart)  # bitwise: the weights train the same
    torch.testing.assert_close(together, apart)  # the logged value, up to summation order


@pytest.mark.parametrize(
    "kwargs", [{}, {"weight": 0.5}, {"label_smoothing": 0.1}], ids=["plain", "weighted", "smoothed"]
)
def test_cross_entropy_members_train_together_as_alone(kwargs):
    """Plain cross-entropy takes one call for all members (weighted: scaled per member);
    label smoothing keeps one call per member. Either way each member trains as alone."""
    val = _data(40, 99)
    train = {s: _data(24, 10 + s) for s in SEEDS}
    settings = {s: _settings(s, 2) for s in SEEDS}
    alone = [
        fit(
            _model(s),
            train[s],
            val,
            settings[s],
            objectives={"ce": CrossEntropy(**kwargs)},
            trainer_kwargs=QUIET,
        )
        for s in SEEDS
    ]
    members = [
        Member(_model(s), train[s], settings[s], {"ce": CrossEntropy(**kwargs)}) for s in SEEDS
    ]
    module = []

    class Keep(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            module.append(pl_module)

    together = fit_ensemble(members, val, trainer_kwargs=QUIET, callbacks=[Keep()])
    assert (module[0]._joint_ce is not None) == ("label_smoothing" not in kwargs)
    for a, b in zip(alone, together, strict=True):
        assert [h["val/acc"] for h in b.history] == [h["val/acc"] for h in a.history]
        torch.testing.assert_close(
            [h["train/loss"] for h in b.history], [h["train/loss"] for h in a.history]
        )
        assert _max_diff(a.model, b.model) < 1e-5


class _Smoothed(CrossEntropy):
    """A subclass: its own forward must run."""


def _hooked() -> CrossEntropy:
    term = CrossEntropy()
    term.register_forward_hook(lambda *_: None)
    return term


def _backward_hooked() -> CrossEntropy:
    term = CrossEntropy()
    term.register_full_backward_hook(lambda *_: None)
    return term


def _own_forward() -> CrossEntropy:
    term = CrossEntropy()
    term.forward = lambda step: CrossEntropy.forward(term, step) * 3  # type: ignore[method-assign]
    return term


@pytest.mark.parametrize(
    ("terms", "joint"),
    [
        ([CrossEntropy(), CrossEntropy()], True),
        ([CrossEntropy(weight=0.5), CrossEntropy(weight=0.5)], True),
        ([CrossEntropy(), CrossEntropy(weight=0.5)], False),  # members' terms differ
        ([CrossEntropy("source"), CrossEntropy()], False),
        ([_Smoothed(), _Smoothed()], False),
        ([_hooked(), CrossEntropy()], False),
        ([CrossEntropy(), _backward_hooked()], False),
        ([CrossEntropy(), _own_forward()], False),
        ([CrossEntropy(label_smoothing=0.1)] * 2, False),
    ],
    ids=[
        "plain",
        "weighted",
        "weights-differ",
        "streams-differ",
        "subclass",
        "hook",
        "backward-hook",
        "forward",
        "ls",
    ],
)
def test_one_call_for_all_members_only_where_no_term_expects_its_forward(terms, joint):
    dicts = [nn.ModuleDict({"ce": t}) for t in terms]
    assert (module_lib._only_cross_entropy(dicts) is terms[0]) == joint
    assert module_lib._only_cross_entropy([*dicts, nn.ModuleDict({})]) is None
    for register in (
        nn.modules.module.register_module_forward_hook,
        nn.modules.module.register_module_full_backward_hook,
    ):
        handle = register(lambda *_: None)
        try:
            assert module_lib._only_cross_entropy(dicts) is None  # a global hook sees every call
        finally:
            handle.remove()


def test_a_hook_registered_when_the_fit_starts_still_sees_every_members_term():
    """The one-call decision is taken when training starts, after the callbacks' set-up."""
    calls = []

    class Hook(Callback):
        def on_fit_start(self, trainer, pl_module):
            for terms in pl_module.member_objectives:
                terms["ce"].register_forward_hook(lambda *_: calls.append(1))

    members = [Member(_model(s), _data(24, 10 + s), _settings(s, 2)) for s in SEEDS]
    fit_ensemble(members, _data(40, 99), trainer_kwargs=QUIET, callbacks=[Hook()])
    assert len(calls) == 3 * 3 * 3  # every member's term, at every step (3 an epoch), 3 epochs


def test_members_share_one_device_copy_of_one_split():
    """Each seed converts the shared splits itself (separate tensors over one array): on the
    training device they are one tensor; a split of its own gets its own; on the device they
    are already on, tensors stay as they are."""
    a = np.zeros((6, 2), dtype=np.float32)
    moved: dict = {}
    meta = torch.device("meta")
    x1, _ = fit_lib._to((torch.from_numpy(a), None), meta, moved)
    x2, y2 = fit_lib._to((torch.from_numpy(a), torch.zeros(6)), meta, moved)
    x3, _ = fit_lib._to((torch.from_numpy(a.copy()), None), meta, moved)
    assert x1.device == meta and x1 is x2 and x3 is not x1 and y2.device == meta
    cpu = torch.from_numpy(a)
    assert fit_lib._to((cpu, None), torch.device("cpu"), {})[0] is cpu


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


@pytest.mark.parametrize("n", [1, 3])
def test_training_resumes_in_train_mode_after_every_validation_frozen_groups_in_eval(n):
    class Modes(Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_start(self, trainer, module, *_):
            net = module.wide or module.members[0]  # the network that computes
            modes = {m.training for g in net.groups[1:] for m in g.modules()}
            frozen = {m.training for m in net.groups[0].modules()}
            self.seen.append((trainer.current_epoch, module.training, modes, frozen))

    val, k = _data(40, 99), 1
    members = [Member(_model(s), _data(24, 10 + s), _settings(s, k)) for s in SEEDS[:n]]
    modes = Modes()
    fit_ensemble(members, val, trainer_kwargs=QUIET, callbacks=[modes], prefix_caching=False)
    assert {epoch for epoch, *_ in modes.seen} == {0, 1, 2}  # after the 1st and 2nd validation
    assert all(seen[1:] == (True, {True}, {False}) for seen in modes.seen), modes.seen


@pytest.mark.parametrize("n", [1, 3])
def test_gradients_are_freed_before_every_validation(n):
    """What Lightning's default before validation does (module.zero_grad): no parameter holds a
    gradient, a member's, an objective's (DANN's discriminator) or one that no optimiser
    steps (the pool's extra layer here)."""

    class Grads(Callback):
        def __init__(self):
            self.before, self.during = [], []

        def on_before_optimizer_step(self, trainer, module, optimizer):
            self.before.append(sum(p.grad is not None for p in module.parameters()))

        def on_validation_start(self, trainer, module):
            held = [name for name, p in module.named_parameters() if p.grad is not None]
            self.during.append(held)

    val, k = _data(40, 99), 1
    streams = {
        s: {"source": _data(40, 20 + s), "unlabelled": (_data(24, 30 + s)[0], None)} for s in SEEDS
    }
    members = [
        Member(
            _model(s, _with_pool(lambda: nn.Linear(32, 32))),
            streams[s],
            _settings(s, k),
            {"ce": CrossEntropy("source"), "dann": DANN(hidden=16)},  # DANN has weights
        )
        for s in SEEDS[:n]
    ]
    grads = Grads()
    fit_ensemble(members, val, trainer_kwargs=QUIET, callbacks=[grads])
    assert min(grads.before) > 0  # trained parameters had gradients at every step
    assert grads.during == [[]] * 3
    assert all(p.grad is None for p in members[0].model.pool.parameters())


def test_each_member_logs_its_own_metrics_and_the_loop_logs_the_first_members():
    class Sink(Logger):
        name, version = "sink", 0

        def __init__(self):
            super().__init__()
            self.rows, self.status = [], None

        def log_hyperparams(self, params, *args, **kwargs):
            pass

        def log_metrics(self, metrics, step=None):
            self.rows.append(dict(metrics))

        def finalize(self, status):
            self.status = status

    class Monitor(Callback):  # what a pruning callback sees: the first member's, as one by one
        def __init__(self):
            self.seen = []

        def on_validation_end(self, trainer, module):
            self.seen.append(float(trainer.callback_metrics["val/acc"]))

    sinks, whole, monitor = [Sink() for _ in SEEDS], Sink(), Monitor()
    members = [
        Member(_model(s), _data(24, 10 + s), _settings(s, 0), logger=sink)
        for s, sink in zip(SEEDS, sinks, strict=True)
    ]
    results = fit_ensemble(
        members, _data(40, 99), trainer_kwargs=QUIET, logger=whole, callbacks=[monitor]
    )
    for sink, result in zip(sinks, results, strict=True):
        assert [r["val/acc"] for r in sink.rows] == [h["val/acc"] for h in result.history]
        assert sink.status == "success"
    first = [h["val/acc"] for h in results[0].history]
    assert monitor.seen == pytest.approx(first)  # Lightning keeps it as float32
    assert [r["val/acc"] for r in whole.rows] == first
    assert len({tuple(h["val/loss"] for h in r.history) for r in results}) == 3  # not all alike


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
    with caplog.at_level(logging.DEBUG, logger="pipeline.transfer.fit"):
        for _ in range(2):
            members = [
                Member(rolled(s), _data(24, s), st) for s, st in zip(SEEDS, settings, strict=True)
            ]
            together = fit_ensemble(members, val, trainer_kwargs=QUIET)
    said = [r for r in caplog.records if "mixes the members' channels" in r.getMessage()]
    assert len(said) == 2 and "their members run one after another" in said[0].getMessage()
    # shown once per process: a timm backbone gave this line for every one of a stage's fits
    assert said[1].levelno == logging.DEBUG and [r.levelno for r in said].count(logging.INFO) <= 1
    for a, b in zip(alone, together, strict=True):
        assert _max_diff(a.model, b.model) == 0.0


def test_train_arms_equals_train_arm_per_arm_and_groups_what_can_share_a_loop(
    pretrained: Path, caplog
):
    import dataclasses

    cfg = compose()
    target = load_domain(pretrained / "outputs/prepare/target")
    source_data = load_domain(pretrained / "outputs/prepare/source")
    source = SourceModel.load(pretrained / "outputs/pretrain/model")
    factory = build.model_factory(cfg)
    # each seed its own labelled training and validation subsets; labelled source data too
    task = TargetTask(target, 1, 3, source_data=source_data)
    arms = [build.arm(cfg, name, 4, s) for name in ("freeze_k", "l2sp", "scratch") for s in (0, 1)]

    def dann():  # a discriminator per member, initialised as it would be alone
        return {"ce": CrossEntropy(), "dann": DANN(hidden=16)}

    finetune = build.arm(cfg, "finetune", 4, 0)

    def adversarial(seed: int) -> Arm:
        # 4 epochs, not 6: the gradient reversal amplifies float rounding ~30x an epoch (seed
        # 0 alone vs together: train/loss equal to 2e-7 in epoch 2, 4e-6 in epoch 3, 1e-4 in
        # epoch 4), so the weights are compared before that growth swamps the tolerance
        arm = build.arm(cfg, "finetune", 4, seed)
        settings = dataclasses.replace(arm.settings, epochs=4)
        return dataclasses.replace(arm, name="dann", objectives=dann, settings=settings)

    arms += [adversarial(s) for s in (0, 1)]

    class Noisy(CrossEntropy):
        unvectorised = "draws random numbers"

    arms.append(dataclasses.replace(finetune, name="noisy", objectives=lambda: {"ce": Noisy()}))

    class DroppyDANN(DANN):  # dropout in the discriminator: members would share one generator
        def setup(self, model):
            super().setup(model)
            self.discriminator.net.insert(2, nn.Dropout(0.5))

    arms += [
        dataclasses.replace(
            build.arm(cfg, "finetune", 4, s),
            name="droppy",
            objectives=lambda: {"ce": CrossEntropy(), "dann": DroppyDANN(hidden=16)},
        )
        for s in (0, 1)
    ]
    kw = {"trainer_kwargs": QUIET}
    alone = [train_arm(a, task, factory, source, cache=PrefixCache(), **kw) for a in arms]
    with caplog.at_level(logging.INFO, logger="pipeline.transfer.train"):
        together = train_arms(arms, task, factory, source, cache=PrefixCache(), **kw)
    assert (
        "arm noisy, seed 0 trains alone: objective ce (Noisy) draws random numbers" in caplog.text
    )
    for seed in (0, 1):  # reads the source and unlabelled streams, but cannot share a loop
        assert (
            f"arm droppy, seed {seed} trains alone: objective layer dann.discriminator.net.2 "
            "draws random numbers in training" in caplog.text
        )
    for arm, a, b in zip(arms, alone, together, strict=True):
        assert a.best_epoch == b.best_epoch, arm.name
        torch.testing.assert_close(
            [h["val/acc"] for h in b.history], [h["val/acc"] for h in a.history]
        )
        # L2-SP pulls each to its own w0; DANN's discriminator and reversal are per member
        assert _max_diff(a.model, b.model) < 1e-4, arm.name


@pytest.mark.parametrize("ensembles", [True, False])
def test_transfer_stage_keeps_one_mlflow_run_per_arm_and_seed(workspace, ensembles):
    import json

    from mlflow import MlflowClient

    from stages import transfer, tune

    overrides = ("tune.enabled=false", "transfer.run=[scratch,freeze_k,l2sp]", "transfer.seeds=3")
    cfg = compose(*overrides, f"trainer.ensembles={str(ensembles).lower()}")
    tune.run(cfg)
    if not ensembles:  # one by one: the ensembles' numbers, within float tolerance
        together = transfer.run(compose(*overrides))
    metrics = transfer.run(cfg)
    if not ensembles:
        for arm in ("scratch", "freeze_k", "l2sp"):
            assert metrics[arm]["val_acc"] == pytest.approx(together[arm]["val_acc"], abs=1e-6)
    index = json.loads(Path("outputs/transfer/models/index.json").read_text())
    client = MlflowClient()
    runs = {(r["arm"], r["seed"]): client.get_run(r["run_id"]) for r in index["runs"]}
    assert set(runs) == {(a, s) for a in ("scratch", "freeze_k", "l2sp") for s in (0, 1, 2)}
    for (arm, seed), run in runs.items():
        assert run.info.status == "FINISHED" and run.info.run_name == f"{arm}-seed{seed}"
        assert run.data.tags["mlflow.parentRunId"] == index["run_id"]
        assert run.data.tags["graftlab.seed"] == str(seed)
        assert run.data.params["arm"] == arm
        assert len(client.get_metric_history(run.info.run_id, "val/acc")) == cfg.transfer.epochs
    losses = {
        s: tuple(
            m.value for m in client.get_metric_history(runs["l2sp", s].info.run_id, "train/loss")
        )
        for s in (0, 1, 2)
    }
    assert len(set(losses.values())) == 3  # each seed logged its own curve


def test_a_diverging_ensemble_ends_every_seed_run_failed(workspace):
    from mlflow import MlflowClient

    from pipeline.errors import TrainingError
    from stages import transfer, tune

    cfg = compose("tune.enabled=false", "transfer.run=[scratch,freeze_k]", *DIVERGING_SCRATCH)
    tune.run(cfg)
    with pytest.raises(TrainingError, match=r"NaN/inf in epoch \d+ \(seed \d\)"):
        transfer.run(cfg)
    client = MlflowClient()
    exp = client.get_experiment_by_name("graftlab")
    (parent,) = client.search_runs(
        [exp.experiment_id],
        "attributes.run_name = 'transfer'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    children = client.search_runs(
        [exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert parent.info.status == "FAILED"
    assert len(children) == 2 * cfg.transfer.seeds
    assert {c.info.status for c in children} == {"FAILED"}
    assert not Path("outputs/transfer").exists()


def test_optimiser_groups_with_equal_settings_merge_in_order_and_others_stay_apart():
    a, b, c, d = (nn.Parameter(torch.zeros(1)) for _ in range(4))
    groups = [
        {"name": "group2", "params": [a], "lr": 0.01, "weight_decay": 0.0},
        {"name": "head", "params": [b], "lr": 0.05, "weight_decay": 0.0},
        {"name": "group3", "params": [c], "lr": 0.01, "weight_decay": 0.0},
        {"name": "DANN", "params": [d], "lr": 0.05, "weight_decay": 1e-4},
    ]
    merged = merge_equal_groups(groups)
    assert [(g["name"], g["params"], g["lr"]) for g in merged] == [
        ("group2+group3", [a, c], 0.01),
        ("head", [b], 0.05),
        ("DANN", [d], 0.05),
    ]
    assert groups[0]["params"] == [a]  # the caller's groups are left as they were


def test_optimiser_groups_merge_only_on_plain_equal_settings_and_keep_torchs_checks():
    a, b, c, d = (nn.Parameter(torch.zeros(1)) for _ in range(4))
    # a single tensor is a group's params as torch accepts it; a tensor lr is never compared
    # (0.01 and 0.01004 print alike); 1 and 1.0 are different settings to an optimiser
    groups = [
        {"params": a, "lr": torch.tensor(0.01)},
        {"params": [b], "lr": torch.tensor(0.01004)},
        {"params": [c], "lr": 1},
        {"params": (d,), "lr": 1.0},
    ]
    merged = merge_equal_groups(groups)
    assert [g["params"] for g in merged] == [[a], [b], [c], [d]]
    betas = [{"params": [p], "betas": (0.9, 0.99)} for p in (a, b)]  # tuples are plain
    assert [g["params"] for g in merge_equal_groups(betas)] == [[a, b]]
    # a parameter in two groups is an error, as the optimiser would say, not a double step
    with pytest.raises(ValueError, match="more than one parameter group"):
        merge_equal_groups([{"params": [a], "lr": 0.1}, {"params": [b, a], "lr": 0.1}])


@pytest.mark.parametrize("n", [1, 3])
def test_merged_optimiser_groups_train_bitwise_as_one_group_per_layer_group(n, monkeypatch):
    def run(merge):
        groups = []
        monkeypatch.setattr(
            module_lib, "merge_equal_groups", lambda g: groups.append(merge(g)) or groups[-1]
        )
        members = [Member(_model(s), _data(24, 10 + s), _settings(s, 1)) for s in SEEDS[:n]]
        val = _data(40, 99)
        results = fit_ensemble(members, val, trainer_kwargs={**QUIET, "gradient_clip_val": 0.05})
        return results, len(groups[-1])

    merged, n_merged = run(merge_equal_groups)
    apart, n_apart = run(list)
    # 3 trainable groups + head per member; each member's backbone lr differs (_settings)
    assert (n_apart, n_merged) == (4 * n, 2 if n == 1 else n + 1)
    for a, b in zip(merged, apart, strict=True):
        assert [h["val/acc"] for h in a.history] == [h["val/acc"] for h in b.history]
        assert _max_diff(a.model, b.model) == 0.0
