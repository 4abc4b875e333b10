"""Built-in data: deterministic generation, stratified disjoint splits, label budgets, cards."""

import json

import numpy as np
import pytest

from pipeline.data.domain import Domain, Split
from pipeline.data.images.sklearn_digits import make_sklearn_digits
from pipeline.data.images.synthetic_digits import make_synthetic_digits, render_digits
from pipeline.data.splits import label_budget, stratified_split
from pipeline.data.store import load_domain, save_domain
from pipeline.errors import ConfigError, GraftlabError

FONTS = ["DejaVuSans.ttf", "cmr10.ttf"]


def test_synthetic_digits_are_deterministic_by_seed():
    a = render_digits(50, image_size=16, fonts=FONTS, seed=3)
    b = render_digits(50, image_size=16, fonts=FONTS, seed=3)
    c = render_digits(50, image_size=16, fonts=FONTS, seed=4)
    assert a.sha256() == b.sha256()
    assert a.sha256() != c.sha256()
    assert a.x.shape == (50, 1, 16, 16) and a.x.dtype == np.float32
    assert a.x.min() >= 0.0 and a.x.max() <= 1.0
    assert np.bincount(a.y).tolist() == [5] * 10  # class balanced


def test_shuffled_source_keeps_images_but_breaks_labels():
    kw = dict(image_size=16, seed=0, n_train=200, n_val=50, fonts=FONTS)
    good, bad = make_synthetic_digits(**kw), make_synthetic_digits(**kw, shuffle_labels=True)
    assert np.array_equal(good.splits["train"].x, bad.splits["train"].x)
    assert (good.splits["train"].y != bad.splits["train"].y).mean() > 0.5
    assert bad.name == "synthetic_digits_shuffled"


def test_unknown_font_lists_the_available_ones():
    with pytest.raises(ConfigError, match=r"data\.source\.fonts.*DejaVuSans\.ttf"):
        render_digits(20, image_size=16, fonts=["NoSuchFont.ttf"], seed=0)


def test_target_splits_are_stratified_and_disjoint():
    d = make_sklearn_digits(image_size=16, seed=0, test_fraction=0.4, val_per_class=20)
    # rows are disjoint by construction (test_stratified_split_indices_partition_the_rows)
    assert sum(len(s) for s in d.splits.values()) == 1797
    assert d.splits["val"].class_counts(10) == [20] * 10
    test_share = np.bincount(d.splits["test"].y) / np.bincount(
        np.concatenate([s.y for s in d.splits.values()])
    )
    assert np.allclose(test_share, 0.4, atol=0.02)


def test_stratified_split_indices_partition_the_rows():
    y = np.repeat(np.arange(5), 40)
    parts = stratified_split(y, test_fraction=0.25, val_per_class=4, seed=1)
    together = np.concatenate(list(parts.values()))
    assert sorted(together.tolist()) == list(range(200))
    assert np.bincount(y[parts["val"]]).tolist() == [4] * 5


def test_label_budget_is_per_class_seeded_and_from_train_only():
    y = np.repeat(np.arange(10), 30)
    a, b, c = label_budget(y, 3, seed=0), label_budget(y, 3, seed=0), label_budget(y, 3, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(y[a]).tolist() == [3] * 10


@pytest.mark.parametrize(
    ("bad", "allowed"),
    [
        (0, "an integer in [1, 30] (the smallest class of the split it draws from has 30 rows)"),
        (-2, "an integer in [1, 30] (the smallest class of the split it draws from has 30 rows)"),
        (31, "an integer in [1, 30] (the smallest class of the split it draws from has 30 rows)"),
        (2.5, "a positive integer"),
        (True, "a positive integer"),
    ],
)
def test_label_budget_outside_the_data_names_the_key_and_limit(bad, allowed):
    y = np.repeat(np.arange(10), 30)
    with pytest.raises(ConfigError) as err:
        label_budget(y, bad, seed=0)
    assert str(err.value) == f"data.labels_per_class={bad!r} is not allowed; expected {allowed}"


def test_store_roundtrip_checks_the_card_digest(tmp_path):
    d = Domain(
        "toy",
        ("a", "b"),
        {"train": Split(np.zeros((4, 1, 2, 2), np.float32), np.array([0, 1, 0, 1]))},
    )
    card = save_domain(d, tmp_path)
    assert load_domain(tmp_path).card()["sha256"] == card["sha256"]
    card_file = tmp_path / "card.json"
    bad = json.loads(card_file.read_text()) | {"sha256": "0" * 64}
    card_file.write_text(json.dumps(bad))
    with pytest.raises(GraftlabError, match="digest"):
        load_domain(tmp_path)
    with pytest.raises(GraftlabError, match="prepare"):
        load_domain(tmp_path / "missing")


def _imbalanced(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_label_budget_picks_distinct_sorted_rows_of_each_class_up_to_the_smallest():
    y = np.random.default_rng(0).permutation(_imbalanced([7, 4, 9]))
    idx = label_budget(y, 4, seed=3)  # the smallest class has exactly 4 rows
    assert idx.tolist() == sorted(set(idx.tolist()))
    assert np.bincount(y[idx]).tolist() == [4, 4, 4]
    with pytest.raises(ConfigError, match=r"labels_per_class=5.*\[1, 4\].*has 4 rows"):
        label_budget(y, 5, seed=3)
    assert label_budget(y, 1, seed=0).size == 3
    assert label_budget(y, np.int64(2), seed=0).size == 6  # numpy integers from arrays work


def test_stratified_split_boundaries_name_the_setting_and_the_range():
    y = _imbalanced([10, 10, 6])
    parts = stratified_split(y, test_fraction=0.5, val_per_class=2, seed=0)
    # the smallest class keeps 3 rows after the test split: val may take 2, not 3
    assert np.bincount(y[parts["train"]]).min() == 1
    with pytest.raises(ConfigError) as err:
        stratified_split(y, test_fraction=0.5, val_per_class=3, seed=0)
    assert str(err.value) == (
        "data.target.val_per_class=3 is not allowed; expected an integer in [1, 2] (the "
        "smallest class keeps 3 rows after the test split)"
    )
    for bad in (0, 1, 1.5, -0.1, True):
        with pytest.raises(ConfigError) as err:
            stratified_split(y, test_fraction=bad, val_per_class=1, seed=0)
        assert str(err.value) == (
            f"data.target.test_fraction={bad!r} is not allowed; expected a number in (0, 1)"
        )
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError) as err:
            stratified_split(y, test_fraction=0.5, val_per_class=bad, seed=0)
        assert str(err.value) == (
            f"data.target.val_per_class={bad!r} is not allowed; expected an integer >= 1"
        )
    with pytest.raises(ConfigError, match=r"^data\.source\.test_fraction=0\.01 .*a share"):
        stratified_split(y, test_fraction=0.01, val_per_class=1, seed=0, key="data.source")
    # the test share takes all of the small class: it says so instead of a range of [1, -1]
    small = _imbalanced([20, 20, 3])
    with pytest.raises(ConfigError) as err:
        stratified_split(small, test_fraction=0.85, val_per_class=1, seed=0)
    assert str(err.value) == (
        "data.target.test_fraction=0.85 is not allowed; expected a share that leaves every "
        "class a val and a training row (one keeps 0)"
    )


@pytest.mark.parametrize("counts", [[5, 2], [3, 0, 4]])
def test_stratified_split_needs_three_rows_of_every_class(counts):
    with pytest.raises(GraftlabError) as err:
        stratified_split(
            _imbalanced(counts), test_fraction=0.3, val_per_class=1, seed=0, source="toy.npz"
        )
    assert str(err.value) == (
        "toy.npz: every class needs at least 3 rows (a test, a val and a training row); class "
        f"counts are {counts}"
    )
    # without a file, the labels are named by their config key (was "the target labels" for
    # the source too)
    with pytest.raises(GraftlabError, match=r"^the labels of data\.source: every class"):
        stratified_split(
            _imbalanced(counts), test_fraction=0.3, val_per_class=1, seed=0, key="data.source"
        )


def test_a_single_class_is_refused_as_one_class_not_as_too_few_rows():
    # was "every class needs at least 3 rows ...; class counts are [60]": 60 is not too few
    with pytest.raises(GraftlabError) as err:
        stratified_split(_imbalanced([60]), test_fraction=0.3, val_per_class=1, seed=0, source="f")
    assert str(err.value) == "f: holds 1 class (60 rows); at least 2 classes are needed to classify"


def test_two_classes_of_three_rows_are_enough():
    parts = stratified_split(_imbalanced([3, 3]), test_fraction=0.3, val_per_class=1, seed=0)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [2, 2, 2]


def test_stratified_split_is_seeded_sorted_and_keeps_every_class_in_every_split():
    y = np.random.default_rng(1).permutation(_imbalanced([12, 9, 15]))
    a = stratified_split(y, test_fraction=0.25, val_per_class=2, seed=4)
    b = stratified_split(y, test_fraction=0.25, val_per_class=2, seed=4)
    c = stratified_split(y, test_fraction=0.25, val_per_class=2, seed=5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    for name, idx in a.items():
        assert idx.tolist() == sorted(set(idx.tolist())), name
        assert (np.bincount(y[idx], minlength=3) > 0).all(), name
    assert len(a["test"]) == 9  # ceil(0.25 * 36)
    assert np.bincount(y[a["val"]]).tolist() == [2, 2, 2]
