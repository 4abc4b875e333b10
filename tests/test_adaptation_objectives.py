"""Domain-adaptation objectives on planted inputs: each behaves as its paper says."""

import pytest
import torch

from pipeline.models.small_cnn import small_cnn
from pipeline.objectives import StepOutputs
from pipeline.objectives.adversarial import reversal_coefficient, reverse_gradient
from pipeline.objectives.cdan import CDAN, entropy_weights
from pipeline.objectives.coral import CORAL
from pipeline.objectives.dann import DANN
from pipeline.objectives.mcc import MCC
from pipeline.objectives.mmd import MKMMD, mk_mmd2
from stages import _build as build
from tests.conftest import compose

DA_ARMS = ["source_only", "dann", "cdan", "cdan_e", "dan", "coral", "mcc"]


def _step(fs, ft, ls=None, lt=None, progress=1.0):
    ls = torch.zeros(len(fs), 10) if ls is None else ls
    lt = torch.zeros(len(ft), 10) if lt is None else lt
    return StepOutputs(
        x={},
        y={"source": None, "unlabelled": None},
        features={"source": fs, "unlabelled": ft},
        logits={"source": ls, "unlabelled": lt},
        model=small_cnn(10, width=8),
        progress=progress,
    )


def test_coral_is_zero_for_equal_covariances_and_grows_with_a_planted_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    coral = CORAL()
    assert float(coral(_step(x, x + 3.0))) == pytest.approx(0.0, abs=1e-9)  # mean shift only
    losses = [float(coral(_step(x, x * s))) for s in (1.0, 1.5, 2.0, 3.0)]
    assert losses[0] == pytest.approx(0.0, abs=1e-9)
    assert losses == sorted(losses) and losses[-1] > 0


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    reverse_gradient(x, 0.5).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, -0.5))
    y = torch.randn(5, 3)
    assert torch.equal(reverse_gradient(y, 0.5), y)  # identity forward


def test_reversal_schedule_rises_from_zero_to_one():
    values = [reversal_coefficient(p) for p in (0.0, 0.1, 0.5, 1.0)]
    assert values[0] == 0.0 and values == sorted(values) and values[-1] == pytest.approx(1, 1e-4)


def test_mmd_of_same_distribution_is_near_zero_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)
    same = float(mk_mmd2(a, b))
    shifted = [float(mk_mmd2(a, b + d)) for d in (0.5, 1.0, 2.0)]
    assert abs(same) < 0.01
    assert shifted == sorted(shifted) and shifted[0] > 5 * abs(same)
    assert float(MKMMD()(_step(a[:32], b[:32] + 2))) > 0


def test_mcc_is_low_on_confident_diagonal_predictions_and_high_on_confused_ones():
    eye = torch.eye(10).repeat(4, 1) * 20.0  # confident, every class used
    confused = torch.randn(40, 10, generator=torch.Generator().manual_seed(0)) * 0.1
    mcc = MCC(temperature=2.5)
    low = float(mcc(_step(eye, eye, eye, eye)))
    high = float(mcc(_step(eye, eye, confused, confused)))
    assert low < 0.05 < high


@pytest.mark.parametrize("make", [DANN, CDAN, lambda: CDAN(entropy=True)])
def test_adversarial_terms_train_their_discriminator_and_reverse_the_features_gradient(make):
    model = small_cnn(10, width=8)
    term = make()
    term.setup(model)
    g = torch.Generator().manual_seed(0)
    fs = torch.randn(16, model.feature_dim, generator=g, requires_grad=True)
    ft = (torch.randn(16, model.feature_dim, generator=g) + 1).requires_grad_()
    logits = torch.randn(32, 10, generator=g)
    loss = term(_step(fs, ft, logits[:16], logits[16:], progress=1.0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert term.param_groups(0.1, 0.0)  # the discriminator has its own optimiser group
    loss.backward()
    disc = [p for p in term.parameters() if p.grad is not None]
    assert disc and fs.grad is not None and fs.grad.abs().sum() > 0
    # at progress 0 the reversal coefficient is 0: the features get no gradient at all
    fs.grad = None
    term(_step(fs, ft, logits[:16], logits[16:], progress=0.0)).backward()
    assert fs.grad.abs().sum() == 0


def test_cdan_uses_the_randomised_map_for_wide_features_and_entropy_weights_favour_confidence():
    wide = CDAN(max_dim=100, random_dim=32)
    wide.setup(small_cnn(10, width=16))  # 64 features x 10 classes > 100
    assert wide.randomized and wide.multilinear(torch.ones(3, 64), torch.ones(3, 10)).shape[1] == 32
    exact = CDAN()
    exact.setup(small_cnn(10, width=8))
    assert exact.multilinear(torch.ones(3, 32), torch.ones(3, 10)).shape[1] == 320
    w = entropy_weights(torch.tensor([[1.0, 0.0], [0.5, 0.5]]))
    assert w.mean() == pytest.approx(1.0) and w[0] > w[1]


def test_every_adaptation_arm_builds_from_its_yaml_and_reads_source_and_unlabelled():
    cfg = compose("setting=transductive")
    for name in DA_ARMS:
        arm = build.arm(cfg, name, 4, seed=0)
        reads = {s for t in arm.objectives().values() for s in t.reads}
        assert "source" in reads and "target" not in reads, name
        if name != "source_only":
            assert "unlabelled" in reads, name
    oracle = build.arm(cfg, "oracle", 4, seed=0)
    assert {s for t in oracle.objectives().values() for s in t.reads} == {"target"}
