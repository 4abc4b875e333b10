"""The logic the evaluate stage composes, on planted numbers: curves, comparisons, summary."""

import math

import pytest

from pipeline.metrics.comparison import ScoredModel, gaps, paired_gain, summarise_arms
from pipeline.report.summary import Evaluation, Score
from pipeline.transfer.arms import Arm
from pipeline.transfer.curves import freeze_depth_curve, label_curve, mean
from pipeline.transfer.settings import FitSettings


def _arm(seed: int) -> Arm:
    settings = FitSettings(epochs=1, batch_size=1, head_lr=0.1, backbone_lr=0.1, seed=seed)
    return Arm("scratch", 0, settings)


def test_freeze_depth_curve_trains_each_variant_once_with_k_copied_and_frozen_or_not():
    calls = []

    def accuracy(arms: list[Arm], labels: int) -> list[float]:
        calls.append(
            [(a.init_groups, a.settings.freeze_groups, a.settings.seed, labels) for a in arms]
        )
        return [
            a.init_groups / 10 + (0.05 if a.settings.freeze_groups else 0) + a.settings.seed
            for a in arms
        ]

    rows = freeze_depth_curve(_arm, 3, 2, [0, 1], accuracy)
    assert [r.k for r in rows] == [0, 1, 2, 3]
    assert rows[0].frozen == rows[0].finetuned == (0.0, 1.0)  # k=0 is trained once
    assert rows[2].frozen == pytest.approx((0.25, 1.25))
    assert rows[2].finetuned == pytest.approx((0.2, 1.2))
    assert len(calls) == 1  # one call: the whole curve can train as ensembles
    trained = calls[0]
    assert len(trained) == len(set(trained)) == 2 + 3 * 4 and {c[3] for c in trained} == {2}
    assert (2, 2, 1, 2) in trained and (2, 0, 1, 2) in trained


def test_label_curve_caps_budgets_at_the_smallest_class_and_dedupes():
    budgets = []

    def accuracy(arms: list[Arm], n: int) -> list[float]:
        budgets.append((n, len(arms)))
        return [n / 100 + (0.5 if i < len(arms) // 2 else 0) for i in range(len(arms))]

    rows = label_curve(_arm, _arm, [1, 5, 50, 80], 20, [0, 1], accuracy)
    assert [r.labels_per_class for r in rows] == [1, 5, 20]
    assert budgets == [(1, 4), (5, 4), (20, 4)]  # transfer and scratch seeds of a point at once
    assert rows[-1].transfer == (0.7, 0.7) and mean(rows[-1].scratch) == 0.2


def _scored(arm: str, accs: list[float]) -> list[ScoredModel]:
    return [ScoredModel(arm, s, a, a, [[1]], 0, 0) for s, a in enumerate(accs)]


def test_arms_are_summarised_per_seed_and_compared_pairwise():
    scored = _scored("t", [0.8, 0.7, 0.9]) + _scored("s", [0.5, 0.6, 0.4])
    arms = summarise_arms(list(reversed(scored)), 0.95)
    assert list(arms) == ["s", "t"] and arms["t"].seeds == (0, 1, 2)
    assert arms["t"].acc.values == (0.8, 0.7, 0.9)
    gain = paired_gain(arms["t"], arms["s"], 0.95)
    assert gain.values == pytest.approx((0.3, 0.1, 0.5)) and gain.mean == pytest.approx(0.3)
    half = 4.302652729911275 * 0.2 / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(n)
    assert (gain.low, gain.high) == pytest.approx((0.3 - half, 0.3 + half))
    ntg = gaps(arms, "s", 0.95)["t"]
    assert ntg.mean == pytest.approx(-0.3) and ntg.verdict == "inconclusive"
    clear = summarise_arms(_scored("t", [0.8, 0.81, 0.82]) + _scored("s", [0.5, 0.5, 0.5]), 0.95)
    assert gaps(clear, "s", 0.95)["t"].verdict == "positive"


def test_pairing_needs_the_same_seeds():
    arms = summarise_arms(_scored("t", [0.8, 0.7]) + _scored("s", [0.5]), 0.95)
    with pytest.raises(ValueError, match="same seeds"):
        paired_gain(arms["t"], arms["s"], 0.95)


def test_flat_metrics_carry_the_headline_and_turn_non_finite_values_into_null():
    scored = _scored("t", [0.8]) + _scored("s", [0.5])
    arms = summarise_arms(scored, 0.95)
    ev = Evaluation(
        source="a",
        target="b",
        labels_per_class=1,
        confidence=0.95,
        primary="t",
        baseline="s",
        arms=arms,
        ntg=gaps(arms, "s", 0.95),
        gain=paired_gain(arms["t"], arms["s"], 0.95),
        scores={"leep": Score(-0.5, "higher")},
    )
    m = ev.flat_metrics()
    assert m["transfer_gain"] == pytest.approx(0.3)
    assert m["transfer_gain_ci_low"] is None and m["transfer_gain_ci_high"] is None  # one seed
    assert m["inconclusive"] is True and m["negative_transfer"] is False
    assert m["scores.leep"] == -0.5 and m["arms.s.test_acc"] == 0.5
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in ev.to_dict().values())
