"""The label budget counts every labelled target image: train and validation, drawn per seed."""

import numpy as np
import pytest

from pipeline.data.domain import Domain, Split
from pipeline.errors import ConfigError
from pipeline.transfer.train import TargetTask


def _domain() -> Domain:
    rng = np.random.default_rng(0)
    split = lambda n: Split(rng.normal(size=(n, 4)).astype(np.float32), np.arange(n) % 3)  # noqa: E731
    return Domain("d", ("a", "b", "c"), {"train": split(60), "val": split(30), "test": split(9)})


def test_each_seed_draws_its_own_train_and_validation_images():
    task = TargetTask(_domain(), labels_per_class=2, val_per_class=3)
    a, b = task.validation(0), task.validation(1)
    assert np.bincount(a.y).tolist() == [3, 3, 3] and a.sha256() != b.sha256()
    assert task.validation(0).sha256() == TargetTask(_domain(), 2, 3).validation(0).sha256()
    budget = task.budget(0)
    assert len(budget) == 2 * 3 + 3 * 3 and task.headline == "2 train + 3 val labels per class"


def test_no_validation_budget_means_the_whole_val_split():
    task = TargetTask(_domain(), labels_per_class=1, val_per_class=None)
    assert len(task.validation(5)) == 30 and task.headline.startswith("1 train + all val")


def test_another_training_budget_keeps_the_same_validation_draw():
    task = TargetTask(_domain(), labels_per_class=1, val_per_class=2)
    more = task.with_labels(4)
    assert more.validation(3).sha256() == task.validation(3).sha256()
    assert len(more.labelled(3)) == 12


def test_a_validation_budget_larger_than_the_split_names_its_key():
    with pytest.raises(ConfigError, match=r"data\.val_per_class=11.*\[1, 10\]"):
        TargetTask(_domain(), 1, 11).validation(0)
