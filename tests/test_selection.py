"""Unsupervised validators on planted inputs, their per-epoch callback, and how picks are scored."""

import math

import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.models.small_cnn import small_cnn
from pipeline.objectives.cross_entropy import CrossEntropy
from pipeline.selection import EpochOutputs
from pipeline.selection.bnm import BatchNuclearNorm
from pipeline.selection.callback import ValidatorScores, check_validators
from pipeline.selection.dev import DeepEmbeddedValidation, dev_risk
from pipeline.selection.entropy import Entropy
from pipeline.selection.im import InformationMaximization
from pipeline.selection.picks import Candidate, gap_closed, rank_validators
from pipeline.selection.snd import SoftNeighborhoodDensity
from pipeline.selection.source_accuracy import SourceAccuracy
from pipeline.transfer.fit import fit
from pipeline.transfer.settings import FitSettings

G = torch.Generator().manual_seed(0)
BALANCED = torch.eye(10).repeat(10, 1) * 12.0  # 100 confident predictions, every class used
COLLAPSED = torch.zeros(100, 10)
COLLAPSED[:, 3] = 12.0  # 100 confident predictions, all the same class
DIFFUSE = torch.randn(100, 10, generator=G) * 0.05  # near-uniform predictions


def _out(logits, features=None, **kw):
    features = torch.randn(len(logits), 8, generator=G) if features is None else features
    return EpochOutputs(logits, features, **kw)


def test_entropy_prefers_confident_predictions():
    v = Entropy()
    assert v(_out(BALANCED)) > v(_out(DIFFUSE))
    assert v(_out(DIFFUSE)) == pytest.approx(-math.log(10), abs=0.01)


def test_information_maximisation_prefers_confident_and_diverse_over_collapsed():
    v = InformationMaximization()
    assert v(_out(BALANCED)) == pytest.approx(math.log(10), abs=1e-3)
    assert v(_out(COLLAPSED)) == pytest.approx(0.0, abs=1e-3)
    assert v(_out(DIFFUSE)) == pytest.approx(0.0, abs=0.01)


def test_batch_nuclear_norm_rewards_rank_and_confidence():
    v = BatchNuclearNorm()
    balanced, collapsed, diffuse = (v(_out(x)) for x in (BALANCED, COLLAPSED, DIFFUSE))
    assert balanced > collapsed > diffuse - 1e-9 and balanced > diffuse


def test_snd_is_higher_for_dense_clusters_than_for_scattered_points():
    v = SoftNeighborhoodDensity()
    clusters = BALANCED + torch.randn(100, 10, generator=G) * 0.5
    scattered = torch.randn(100, 10, generator=G) * 3.0
    assert v(_out(clusters)) > v(_out(scattered))


def test_source_accuracy_counts_correct_source_predictions():
    logits = torch.eye(4)[[0, 1, 2, 3]] * 5
    out = _out(DIFFUSE, source_logits=logits, source_labels=torch.tensor([0, 1, 0, 0]))
    assert SourceAccuracy()(out) == pytest.approx(0.5)


def test_dev_is_the_plain_source_loss_without_shift_and_prefers_the_better_classifier():
    # equal weights: DEV is the mean loss (the control variate vanishes)
    losses = torch.rand(50, generator=G).numpy()
    assert dev_risk(losses, torch.ones(50).numpy()) == pytest.approx(losses.mean())
    labels = torch.arange(200) % 10
    good, bad = torch.eye(10)[labels] * 6, torch.eye(10)[(labels + 1) % 10] * 6
    feats = torch.randn(200, 8, generator=G)
    target = torch.randn(100, 8, generator=G)
    v = DeepEmbeddedValidation()

    def score(src_logits):
        return v(
            EpochOutputs(
                DIFFUSE, target, src_logits, feats, labels, torch.randn(300, 8, generator=G)
            )
        )

    assert score(good) > score(bad)


def test_a_validator_that_needs_source_data_is_a_named_error_without_it():
    with pytest.raises(ConfigError, match=r"setting\.validators\.dev=.*no source"):
        check_validators({"im": InformationMaximization(), "dev": DeepEmbeddedValidation()}, False)
    with pytest.raises(ConfigError, match=r"setting\.validators\.dev"):
        ValidatorScores({"dev": DeepEmbeddedValidation()}, torch.zeros(4, 1, 16, 16))
    check_validators({"im": InformationMaximization()}, False)  # reads the target only: fine


def _fit(monitor, callback):
    torch.manual_seed(0)
    model = small_cnn(10, width=8)
    g = torch.Generator().manual_seed(1)
    source = (torch.randn(40, 1, 16, 16, generator=g), torch.arange(40) % 10)
    target = torch.randn(30, 1, 16, 16, generator=g)
    settings = FitSettings(
        epochs=4, batch_size=8, head_lr=0.05, backbone_lr=0.05, steps_per_epoch=2, monitor=monitor
    )
    return fit(
        model,
        {"source": source, "unlabelled": (target, None)},
        source,
        settings,
        objectives={"ce": CrossEntropy(stream="source")},
        trainer_kwargs={"enable_progress_bar": False},
        callbacks=[callback],
    )


def test_validator_scores_every_epoch_and_chooses_the_stopping_epoch():
    def callback():
        target = torch.randn(20, 1, 16, 16, generator=torch.Generator().manual_seed(2))
        vals = {"im": InformationMaximization(), "entropy": Entropy()}
        return ValidatorScores(vals, target, probe=target[:5])

    cb = callback()
    result = _fit("val/entropy", cb)
    assert len(result.history) == 4 and len(cb.rows) == 4 and len(cb.predictions) == 4
    scores = [h["val/entropy"] for h in result.history]
    assert scores == pytest.approx([r["entropy"] for r in cb.rows])  # logged into the history
    assert result.best_epoch == max(range(4), key=lambda i: scores[i])
    assert cb.predictions[0].shape == (5,)
    assert _fit(None, callback()).best_epoch == 3  # fixed length: the last epoch


def test_rank_validators_compares_picks_with_the_test_oracle():
    def c(arm, seed, epoch, good, bad, acc):
        return Candidate(arm, seed, epoch, {"good": good, "bad": bad}, acc)

    cands = [
        c("a", 0, 0, 0.1, 0.9, 0.45),
        c("a", 0, 1, 0.5, 0.1, 0.80),
        c("b", 0, 0, 0.9, 0.2, 0.90),
        c("a", 1, 0, 0.2, 0.8, 0.50),
        c("b", 1, 0, 0.8, 0.3, 0.85),
    ]
    r = rank_validators(cands, ["good", "bad"], 0.95)
    assert r["good"].picks == (("b", 0), ("b", 0)) and r["good"].regret.mean == pytest.approx(0)
    assert r["good"].spearman == pytest.approx(1.0)
    assert r["bad"].picks == (("a", 0), ("a", 0))
    assert r["bad"].regret.values == pytest.approx((0.45, 0.35))
    assert r["bad"].spearman < 0


def test_gap_closed_is_per_seed_and_skips_seeds_without_a_gap():
    iv = gap_closed([0.9, 0.8, 0.7], [0.7, 0.6, 0.7], [1.0, 0.9, 0.7], 0.95)
    assert iv.values == pytest.approx((2 / 3, 2 / 3))
    assert math.isnan(gap_closed([0.5], [0.7], [0.6], 0.95).mean)
