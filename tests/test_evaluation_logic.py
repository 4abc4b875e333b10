"""The logic the evaluate stage composes, on planted numbers: curves, comparisons, summary."""

import math

import pytest

from pipeline.metrics.comparison import ScoredModel, gaps, paired_gain, summarise_arms
from pipeline.metrics.efficiency import PerSeed
from pipeline.metrics.intervals import Interval
from pipeline.metrics.source_scores import ScoreComparison
from pipeline.report.summary import Evaluation
from pipeline.transfer.arms import Arm
from pipeline.transfer.curves import freeze_depth_curve, label_curve, mean
from pipeline.transfer.settings import FitSettings


def _arm(seed: int) -> Arm:
    settings = FitSettings(epochs=1, batch_size=1, head_lr=0.1, backbone_lr=0.1, seed=seed)
    return Arm("scratch", 0, settings)


def test_freeze_depth_curve_trains_each_variant_once_with_k_copied_and_frozen_or_not():
    calls = []

    def accuracy(arms: list[Arm], labels: int) -> list[float]:
        calls.append([(a.init_groups, a.settings.freeze_groups, a.settings.seed) for a in arms])
        return [
            a.init_groups / 10 + (0.05 if a.settings.freeze_groups else 0) + a.settings.seed
            for a in arms
        ]

    rows = freeze_depth_curve(_arm, 3, 2, [0, 1], accuracy)
    assert [r.k for r in rows] == [0, 1, 2, 3]
    assert rows[0].anb == rows[0].anb_plus == (0.0, 1.0)  # k=0: AnB is AnB+, trained once
    assert rows[2].anb == pytest.approx((0.25, 1.25))  # copy 2, freeze 2
    assert rows[2].anb_plus == pytest.approx((0.2, 1.2))  # copy 2, freeze none
    assert rows[2].freeze == pytest.approx((0.35, 1.35))  # copy all 3, freeze 2
    assert rows[0].freeze == pytest.approx((0.3, 1.3))  # copy all, freeze none: fine-tuning
    # one call, so the whole curve can train as ensembles; every distinct model once per seed:
    # AnB at k=0..3, AnB+ at k=1..3, freeze at k=1..2 (k=0 is AnB+ at 3, k=3 is AnB at 3)
    assert len(calls) == 1 and len(calls[0]) == len(set(calls[0])) == 2 * (4 + 3 + 2)
    assert {(2, 2, 1), (2, 0, 1), (3, 2, 1)} <= set(calls[0])


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


def test_intervals_of_accuracies_and_their_differences_stay_in_range():
    # two seeds far apart: the t-interval (t_{0.975, 1} = 12.7) of a 75.9% accuracy ran from
    # -18.2% to 170.0% in the report, and the gain over scratch from -40.7 to +124.0 points
    arms = summarise_arms(_scored("t", [0.98, 0.54]) + _scored("s", [0.10, 0.60]), 0.95)
    acc = arms["t"].acc
    assert acc.mean == pytest.approx(0.76) and (acc.low, acc.high) == (0.0, 1.0)
    gain = paired_gain(arms["t"], arms["s"], 0.95)
    assert gain.mean == pytest.approx(0.41) and (gain.low, gain.high) == (-1.0, 1.0)
    ntg = gaps(arms, "s", 0.95)["t"]
    assert (ntg.ci_low, ntg.ci_high) == (-1.0, 1.0) and ntg.verdict == "inconclusive"
    # inside the range nothing changes
    inside = summarise_arms(_scored("t", [0.6, 0.65, 0.7]), 0.95)["t"].acc
    unclipped = Interval.of([0.6, 0.65, 0.7])
    assert (inside.low, inside.high) == (unclipped.low, unclipped.high)


def test_pairing_needs_the_same_seeds():
    arms = summarise_arms(_scored("t", [0.8, 0.7]) + _scored("s", [0.5]), 0.95)
    with pytest.raises(ValueError, match="same seeds"):
        paired_gain(arms["t"], arms["s"], 0.95)


def test_flat_metrics_carry_the_headline_and_turn_non_finite_values_into_null():
    leep = ScoreComparison("leep", "higher", *(Interval.of([v]) for v in (-0.5, -0.9, 0.4)))
    ev = _evaluation([0.8], [0.5], scores=[leep], epochs_saved=PerSeed((3.0, math.nan)))
    m = ev.flat_metrics()
    assert m["transfer_gain"] == pytest.approx(0.3)
    assert m["transfer_gain_ci_low"] is None and m["transfer_gain_ci_high"] is None  # one seed
    assert m["inconclusive"] is True and m["negative_transfer"] is False
    assert m["scores.leep"] == -0.5 and m["scores.leep_vs_random"] == 0.4
    assert m["arms.s.test_acc"] == 0.5
    # a seed that never reached the goal: no mean, never a mean of the seeds that did
    assert m["epochs_saved"] is None and m["epochs_saved_seeds_reached"] == 1
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in ev.to_dict().values())


def _depth(freeze_by_k: dict[int, tuple]) -> list:
    from pipeline.transfer.curves import DepthPoint

    return [DepthPoint(k, v, v, v) for k, v in sorted(freeze_by_k.items())]


def test_recommendation_is_checked_against_the_freeze_curve_on_the_same_seeds():
    from pipeline.report.summary import recommend

    acc = Interval.of([0.7, 0.72, 0.71])
    same = recommend(
        2, 3, True, acc, (), _depth({0: (0.5,) * 3, 2: (0.7,) * 3, 3: (0.6,) * 3}), 0.95
    )
    assert same.curve_best == 2 and same.curve_agrees and same.curve_difference is None
    near = _depth({0: (0.5, 0.5, 0.5), 2: (0.70, 0.72, 0.71), 3: (0.72, 0.70, 0.73)})
    r = recommend(2, 3, True, acc, (), near, 0.95)
    assert r.curve_best == 3 and r.curve_difference.values == pytest.approx((0.02, -0.02, 0.02))
    assert r.curve_agrees  # interval includes 0
    far = _depth({0: (0.5, 0.5, 0.5), 2: (0.60, 0.61, 0.62), 3: (0.80, 0.82, 0.81)})
    r = recommend(2, 3, True, acc, (), far, 0.95)
    assert r.curve_best == 3 and not r.curve_agrees
    assert recommend(2, 3, False, acc, ("finetune",), None, 0.95).curve_agrees is None


def _evaluation(t: list[float], s: list[float], **kw) -> Evaluation:
    scored = _scored("t", t) + _scored("s", s)
    arms = summarise_arms(scored, 0.95)
    return Evaluation(
        source="a",
        target="b",
        budget="1 train + 3 val labels per class",
        labels_per_class=1,
        confidence=0.95,
        primary="t",
        baseline="s",
        arms=arms,
        ntg=gaps(arms, "s", 0.95),
        gain=paired_gain(arms["t"], arms["s"], 0.95),
        **kw,
    )


def test_an_inconclusive_verdict_claims_no_saving_and_no_benefit():
    from pipeline.report.markdown import verdict_paragraph
    from pipeline.report.summary import recommend

    ev = _evaluation(
        [0.50, 0.56, 0.47],
        [0.52, 0.49, 0.51],
        scratch_equivalent=PerSeed((5.0, 6.0, 5.5)),
        epochs_saved=PerSeed((7.0, 8.0, 7.5)),
    )
    ev.recommendation = recommend(4, 4, True, ev.arms["t"].acc, (), None, 0.95)
    text = verdict_paragraph(ev)
    assert ev.verdict == "inconclusive" and "inconclusive" in text
    for claim in ("Recommended", "saves", "sooner", "more labels", "helps"):
        assert claim not in text, claim
    assert "no benefit over scratch is established" in text


def test_the_recommendation_names_the_depth_and_who_chose_it():
    from pipeline.report.markdown import recommendation_sentence
    from pipeline.report.summary import recommend

    ev = _evaluation([0.80, 0.82, 0.81], [0.50, 0.52, 0.49])
    acc = ev.arms["t"].acc
    far = _depth({0: (0.9, 0.91, 0.92), 2: (0.60, 0.61, 0.62), 3: (0.5, 0.5, 0.5)})
    ev.recommendation = recommend(2, 3, False, acc, (), far, 0.95)
    text = recommendation_sentence(ev)
    assert "freezing the first 2 of 3 layer groups (set in the config, not tuned)" in text
    assert "disagrees: k=0 is" in text and "study" not in text  # no study ran
    ev.recommendation = recommend(2, 3, True, acc, (), far, 0.95)
    assert "which the study (choosing on the small validation budget) did not see" in (
        recommendation_sentence(ev)
    )
    negative = _evaluation([0.40, 0.42, 0.41], [0.80, 0.82, 0.81])
    negative.recommendation = recommend(2, 3, False, negative.arms["t"].acc, (), None, 0.95)
    assert negative.verdict == "negative"
    assert "the configured transfer was freezing the first 2" in recommendation_sentence(negative)
    ev.recommendation = recommend(0, 3, True, acc, (), None, 0.95)
    assert "fine-tuning all 3 layer groups, none frozen" in recommendation_sentence(ev)
    ev.recommendation = recommend(3, 3, True, acc, (), None, 0.95)
    assert "freezing all 3 layer groups, a linear probe" in recommendation_sentence(ev)


def test_a_positive_verdict_states_supported_savings_with_intervals_and_flags_gaps():
    from pipeline.report.markdown import verdict_paragraph

    ev = _evaluation(
        [0.80, 0.82, 0.81],
        [0.50, 0.52, 0.49],
        scratch_equivalent=PerSeed((5.0, 6.0, 5.5)),
        epochs_saved=PerSeed((7.0, math.nan, 7.5)),
    )
    text = verdict_paragraph(ev)
    assert "the source helps" in text and "+30.7 points" in text  # (0.30 + 0.30 + 0.32) / 3
    assert "Scratch needs 4.5 more labels per class (95% CI" in text
    assert "sooner" not in text and "on 1 of 3 seeds" in text


def test_the_label_section_names_capped_budgets_and_matches_the_first_paragraph():
    from pipeline.report.markdown import _label_section, verdict_paragraph

    rows = label_curve(_arm, _arm, [1, 5, 50], 20, [0, 1, 2], lambda arms, n: [n / 40] * len(arms))
    ev = _evaluation(
        [0.80, 0.82, 0.81],
        [0.50, 0.52, 0.49],
        scratch_equivalent=PerSeed((5.0, 6.0, 5.5)),
        label_efficiency=rows,
        label_budgets_capped=(50,),
    )
    text = "\n".join(_label_section(ev))
    assert "Requested budgets 50 exceed the smallest target class and are drawn at 20" in text
    # the section gives the labels scratch needs (5.5), the first paragraph those beyond 1 (4.5)
    assert "scratch needs to match t at 1 (the first paragraph states it as labels more" in text
    assert "mean 5.5" in text and "4.5 more labels per class" in verdict_paragraph(ev)
    ev.label_budgets_capped = ()
    assert "Requested budgets" not in "\n".join(_label_section(ev))
