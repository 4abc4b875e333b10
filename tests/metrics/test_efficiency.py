"""Label and compute savings on planted curves: interpolation, per-seed values, not-reached."""

import math

import pytest

from pipeline.metrics.efficiency import (
    PerSeed,
    epochs_saved,
    epochs_to_reach,
    labels_saved,
    labels_to_reach,
    scratch_equivalent,
)


def test_labels_to_reach_interpolates_in_log_labels():
    # goal halfway between 0.5 (1 label) and 0.9 (4 labels): exp(0.5 * log 4) = 2 labels
    assert labels_to_reach([1, 4], [0.5, 0.9], 0.7) == pytest.approx(2.0)
    assert labels_to_reach([1, 4], [0.5, 0.9], 0.6) == pytest.approx(4**0.25)
    assert labels_to_reach([1, 2, 8], [0.2, 0.4, 0.8], 0.6) == pytest.approx(4.0)


def test_labels_to_reach_at_the_first_point_at_the_exact_goal_and_never():
    assert labels_to_reach([2, 4], [0.8, 0.9], 0.5) == 2.0
    assert labels_to_reach([1, 4], [0.5, 0.9], 0.9) == pytest.approx(4.0)
    assert math.isnan(labels_to_reach([1, 4], [0.5, 0.9], 0.95))


def test_labels_to_reach_uses_the_running_maximum():
    # the dip at 4 labels does not hide that 2 labels already reached 0.8
    assert labels_to_reach([1, 2, 4, 8], [0.4, 0.8, 0.6, 0.9], 0.8) == pytest.approx(2.0)
    # between 4 labels (running max 0.8) and 8 (0.9): halfway in log labels, 4 * sqrt(2)
    assert labels_to_reach([1, 2, 4, 8], [0.4, 0.8, 0.6, 0.9], 0.85) == pytest.approx(4 * 2**0.5)


def test_labels_saved_per_seed_with_a_seed_that_never_gets_there():
    budgets = [1, 4]
    transfer = [[0.7, 0.9], [0.5, 0.6]]
    scratch = [[0.5, 0.7], [0.5, 0.8]]
    saved = labels_saved(budgets, transfer, scratch)
    # seed 0: scratch's best 0.7 needs 4 labels, transfer has it at 1: saves 3; seed 1: never
    assert saved.values[0] == pytest.approx(3.0) and math.isnan(saved.values[1])
    assert saved.reached == 1 and not saved.all_reached
    assert saved.interval(0.95) is None and saved.claim(0.95) is None


def test_scratch_equivalent_reads_each_seed_at_its_own_transfer_accuracy():
    eq = scratch_equivalent([1, 4], [[0.5, 0.9], [0.5, 0.9]], [0.7, 0.95])
    assert eq.values[0] == pytest.approx(2.0) and math.isnan(eq.values[1])


def test_a_saving_is_claimed_only_when_every_seed_reached_and_the_interval_excludes_zero():
    assert PerSeed((3.0, 3.1, 2.9)).claim(0.95).mean == pytest.approx(3.0)
    assert PerSeed((3.0, -2.0, 1.0)).claim(0.95) is None  # interval includes 0
    assert PerSeed((3.0, math.nan, 3.0)).claim(0.95) is None  # one seed not reached
    assert PerSeed((3.0, -2.0, 1.0)).interval(0.95).mean == pytest.approx(2.0 / 3)


def _history(arm, seed, accs):
    return [{"arm": arm, "seed": seed, "epoch": e, "val_acc": a} for e, a in enumerate(accs)]


def test_epochs_to_reach_counts_epochs_from_one():
    rows = _history("t", 0, [0.1, 0.5, 0.9])
    assert epochs_to_reach(rows, 0.5) == 2.0 and epochs_to_reach(rows, 0.05) == 1.0
    assert math.isnan(epochs_to_reach(rows, 0.95))


def test_epochs_saved_counts_seeds_that_never_reach_instead_of_dropping_them():
    rows = (
        _history("t", 0, [0.6, 0.8, 0.8, 0.8])  # reaches scratch's best 0.8 at epoch 2
        + _history("s", 0, [0.1, 0.2, 0.5, 0.8])  # best 0.8 at epoch 4
        + _history("t", 1, [0.1, 0.2, 0.3, 0.3])  # never reaches 0.7
        + _history("s", 1, [0.1, 0.7, 0.7, 0.7])
    )
    saved = epochs_saved(rows, "t", "s")
    assert saved.values[0] == 2.0 and math.isnan(saved.values[1])
    assert saved.interval(0.95) is None


def test_mismatched_seed_lists_are_refused_not_truncated():
    with pytest.raises(ValueError):
        labels_saved([1, 2], [[0.5, 0.6], [0.4, 0.7]], [[0.3, 0.5]])
    with pytest.raises(ValueError):
        scratch_equivalent([1, 2], [[0.3, 0.5]], [0.4, 0.45])


def test_epochs_saved_skips_a_seed_missing_an_arm_and_goes_on():
    rows = [{"arm": "t", "seed": 0, "epoch": e, "val_acc": 0.5} for e in range(3)]
    for arm, accs in (("t", [0.6, 0.8, 0.8]), ("s", [0.2, 0.4, 0.8])):
        rows += [{"arm": arm, "seed": 1, "epoch": e, "val_acc": a} for e, a in enumerate(accs)]
    # seed 0 has no scratch rows: no value for it, and seed 1 is still counted (2 - 1 epochs)
    assert epochs_saved(rows, "t", "s").values == (1.0,)


def test_the_interval_uses_the_confidence_asked_for():
    from pipeline.metrics.intervals import Interval, mean_interval

    values = (1.0, 2.0, 4.0)
    narrow, wide = mean_interval(values, 0.5), mean_interval(values)
    assert wide == mean_interval(values, 0.95) and narrow[2] - narrow[1] < wide[2] - wide[1]
    assert (Interval.of(values, 0.5).low, Interval.of(values, 0.5).high) == narrow[1:]
    assert PerSeed(values).interval(0.5) == Interval.of(values, 0.5)


@pytest.mark.parametrize(
    ("values", "confidence", "message"),
    [
        ([], 0.95, "values must be a non-empty 1-D sequence"),
        ([[1.0, 2.0]], 0.95, "values must be a non-empty 1-D sequence"),
        ([1.0, 2.0], 0.0, "confidence must be in (0, 1), got 0.0"),
        ([1.0, 2.0], 1.0, "confidence must be in (0, 1), got 1.0"),
        ([1.0, 2.0], 1.5, "confidence must be in (0, 1), got 1.5"),
    ],
)
def test_mean_interval_refuses_what_has_no_interval(values, confidence, message):
    from pipeline.metrics.intervals import mean_interval

    with pytest.raises(ValueError) as err:
        mean_interval(values, confidence)
    assert str(err.value) == message
