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


@pytest.mark.parametrize("bad", [0, -2, 31, 2.5])
def test_label_budget_outside_the_data_names_the_key_and_limit(bad):
    y = np.repeat(np.arange(10), 30)
    with pytest.raises(ConfigError, match=r"data\.labels_per_class"):
        label_budget(y, bad, seed=0)


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
