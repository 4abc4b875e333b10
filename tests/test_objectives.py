"""Objectives as modules: a new loss term is one class plus one config entry; streams it reads."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from pipeline.errors import ConfigError
from pipeline.models.small_cnn import small_cnn
from pipeline.objectives import Objective, StepOutputs
from pipeline.objectives.cross_entropy import CrossEntropy
from pipeline.transfer.fit import fit
from pipeline.transfer.settings import FitSettings
from stages import _build as build
from tests.conftest import compose

QUIET = {"enable_progress_bar": False}


class HeadNorm(Objective):
    """Test-only term: the squared norm of the head's weights (reads no batch)."""

    def forward(self, step: StepOutputs) -> torch.Tensor:
        return step.model.head.weight.pow(2).sum()


class UnlabelledProbe(Objective):
    """Test-only term with its own parameters, reading the unlabelled stream."""

    reads = ("unlabelled",)

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.seen: list[int] = []

    def setup(self, model) -> None:
        self.probe = nn.Linear(model.feature_dim, 1)
        self.start = self.probe.weight.detach().clone()

    def forward(self, step: StepOutputs) -> torch.Tensor:
        self.seen.append(len(step.x["unlabelled"]))
        return self.probe(step.features["unlabelled"]).pow(2).mean()


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)


def _settings(**kw) -> FitSettings:
    return FitSettings(**{"epochs": 2, "batch_size": 4, "head_lr": 0.05, "backbone_lr": 0.05, **kw})


def test_a_new_objective_is_one_module_and_one_config_entry(workspace):
    """HeadNorm lives only in this file; an arm lists it with _target_, nothing else changes."""
    term = {"_target_": "tests.test_objectives.HeadNorm", "weight": 1.0}
    ce = {"_target_": "pipeline.objectives.cross_entropy.CrossEntropy"}
    cfg = compose()
    OmegaConf.update(
        cfg,
        "transfer.arms.shrink",
        {"init_groups": 0, "objectives": {"ce": ce, "norm": term}},
        force_add=True,
    )
    plain, shrink = (build.arm(cfg, name, 4, seed=0) for name in ("scratch", "shrink"))
    assert type(shrink.objectives()["norm"]).__name__ == "HeadNorm"  # built from its _target_
    norms = []
    for arm in (plain, shrink):
        torch.manual_seed(0)
        model = small_cnn(10, width=8)
        fit(
            model,
            _data(32, 1),
            _data(16, 2),
            arm.settings,
            objectives=arm.objectives(),
            trainer_kwargs=QUIET,
        )
        norms.append(float(model.head.weight.pow(2).sum()))
    assert norms[1] < 0.5 * norms[0]


def test_an_objective_trains_its_own_parameters_on_the_stream_it_reads():
    torch.manual_seed(0)
    model = small_cnn(10, width=8)
    probe = UnlabelledProbe()
    streams = {"target": _data(8, 1), "unlabelled": (_data(30, 3)[0], None)}
    fit(
        model,
        streams,
        _data(16, 2),
        _settings(),
        trainer_kwargs=QUIET,
        objectives={"ce": CrossEntropy(), "probe": probe},
    )
    # an epoch is one pass over the labelled target (8 rows / batch 4 = 2 steps); the unlabelled
    # stream gives a batch of 4 at every step
    assert probe.seen == [4] * 4
    assert not torch.equal(probe.probe.weight.detach(), probe.start)  # its own optimiser group


def test_a_term_without_its_stream_or_labels_is_a_named_error():
    model = small_cnn(10, width=8)
    with pytest.raises(ConfigError, match=r"objectives\.probe.*'unlabelled' stream"):
        fit(
            model,
            _data(8, 1),
            _data(8, 2),
            _settings(),
            trainer_kwargs=QUIET,
            objectives={"ce": CrossEntropy(), "probe": UnlabelledProbe()},
        )
    with pytest.raises(ConfigError, match=r"objectives\.ce.*labels for the 'unlabelled'"):
        fit(
            model,
            {"unlabelled": (_data(8, 1)[0], None)},
            _data(8, 2),
            _settings(),
            trainer_kwargs=QUIET,
            objectives={"ce": CrossEntropy(stream="unlabelled")},
        )
    with pytest.raises(ConfigError, match=r"objectives.*labelled stream"):
        fit(
            model,
            _data(8, 1),
            _data(8, 2),
            _settings(),
            trainer_kwargs=QUIET,
            objectives={"norm": HeadNorm()},
        )


def test_source_stream_drives_training_when_no_target_labels_are_read():
    torch.manual_seed(0)
    model = small_cnn(10, width=8)
    result = fit(
        model,
        {"source": _data(12, 1)},
        _data(8, 2),
        _settings(epochs=1),
        trainer_kwargs=QUIET,
        objectives={"ce": CrossEntropy(stream="source")},
    )
    assert len(result.history) == 1 and 0 <= result.history[0]["train/acc"] <= 1


def test_bad_objective_settings_name_the_key():
    cfg = compose("transfer.arms.l2sp.objectives.l2sp.alpha=-1")
    with pytest.raises(ConfigError, match=r"transfer\.arms\.l2sp\.objectives\.l2sp=.*>= 0"):
        build.arm(cfg, "l2sp", 4, seed=0)
    cfg = compose("transfer.objectives.ce._target_=pipeline.objectives.nowhere.Loss")
    with pytest.raises(ConfigError, match=r"transfer\.objectives\.ce\._target_"):
        build.arm(cfg, "finetune", 4, seed=0)
    cfg = compose(
        "transfer.objectives.ce._target_=torch.nn.Linear",
        "+transfer.objectives.ce.in_features=2",
        "+transfer.objectives.ce.out_features=2",
    )
    with pytest.raises(ConfigError, match=r"an Objective"):
        build.arm(cfg, "finetune", 4, seed=0)


def test_optimizer_and_scheduler_are_chosen_by_target():
    arm = build.arm(
        compose("transfer/optimizer=adamw", "transfer/scheduler=constant"), "freeze_k", 4, seed=0
    )
    model = small_cnn(10, width=8)
    opt = arm.settings.optimizer(model.param_groups(2, head_lr=0.1, backbone_lr=0.01))
    assert isinstance(opt, torch.optim.AdamW)
    sched = arm.settings.scheduler(opt, 5)
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.01, 0.1])
