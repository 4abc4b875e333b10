"""Modality-free data: any tensor inputs, unlabelled splits, image-only steps kept with images."""

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.data.domain import Domain, Split
from pipeline.data.images.npz import make_npz_domain
from pipeline.data.images.transforms import channel_stats, normalize
from pipeline.data.store import load_domain, save_domain
from pipeline.models.grouped import GroupedNet
from pipeline.transfer.fit import fit
from pipeline.transfer.settings import FitSettings


def _features(n: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = (rng.normal(size=(n, 5)) + y[:, None]).astype(np.float32)
    return Split(x, y.astype(np.int64))


def test_feature_vectors_and_unlabelled_splits_store_and_train():
    d = Domain(
        "vectors",
        ("a", "b", "c"),
        {"train": _features(60, 0), "val": _features(30, 1), "pool": _features(20, 2).unlabelled()},
        modality="features",
    )
    assert d.input_shape == (5,) and not d.splits["pool"].labelled
    card = d.card()
    assert card["splits"]["pool"]["labelled"] is False and card["modality"] == "features"
    assert card["splits"]["pool"]["class_counts"] == []


def test_store_roundtrip_keeps_unlabelled_splits_and_modality(tmp_path):
    d = Domain(
        "v",
        ("a", "b", "c"),
        {"train": _features(9, 0), "u": _features(4, 1).unlabelled()},
        modality="features",
    )
    save_domain(d, tmp_path)
    back = load_domain(tmp_path)
    assert back.modality == "features" and back.splits["u"].y is None
    assert back.card()["sha256"] == d.card()["sha256"]


def test_a_network_of_linear_groups_trains_on_feature_vectors():
    torch.manual_seed(0)
    groups = [
        nn.Sequential(nn.Linear(5, 16), nn.ReLU()),
        nn.Sequential(nn.Linear(16, 16), nn.ReLU()),
    ]
    model = GroupedNet(groups, 16, 3, pool=nn.Identity())
    tr, va = _features(60, 0), _features(30, 1)
    settings = FitSettings(epochs=20, batch_size=16, head_lr=0.1, backbone_lr=0.1, freeze_groups=1)
    result = fit(
        model,
        (torch.from_numpy(tr.x), torch.from_numpy(tr.y)),
        (torch.from_numpy(va.x), torch.from_numpy(va.y)),
        settings,
        trainer_kwargs={"enable_progress_bar": False},
    )
    assert result.cached_prefix and result.best_val_acc > 0.6


def test_normalisation_is_per_channel_and_only_for_images():
    x = np.stack([np.full((4, 4), 0.2), np.full((4, 4), 0.8), np.full((4, 4), 0.5)])[None]
    x = np.concatenate([x, x + 0.1]).astype(np.float32)  # (2, 3, 4, 4)
    d = Domain("rgb", ("a",), {"train": Split(x, np.zeros(2, np.int64))})
    mean, std = channel_stats(d)
    assert mean == pytest.approx([0.25, 0.85, 0.55], abs=1e-6)
    out = normalize(d, mean, std).splits["train"].x
    assert np.allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    with pytest.raises(ValueError, match="needs images with 3 channels"):
        normalize(Domain("v", ("a",), {"train": _features(3, 0)}, modality="features"), mean, std)


def test_npz_takes_rgb_channels_last_and_class_names(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "shapes.npz"
    y = np.arange(120) % 4
    np.savez(
        path,
        x=rng.integers(0, 256, (120, 10, 12, 3), dtype=np.uint8),
        y=y,
        classes=np.array(["circle", "square", "star", "triangle"]),
    )
    d = make_npz_domain(
        image_size=8, seed=0, path=str(path), name="shapes", test_fraction=0.25, val_per_class=3
    )
    assert d.classes == ("circle", "square", "star", "triangle")
    assert d.splits["train"].x.shape[1:] == (3, 8, 8)
