"""Issue 11, item 5 (and the single-class evaluate of item 6): bad data stops the stage that
reads it with one line naming the file, before anything trains or scores on it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.domain import Domain, Split
from pipeline.data.store import load_domain, save_domain
from tests.conftest import compose, write_params
from tests.faults.conftest import now_ms, run_in_process, statuses, temp_folders

SMALL_SOURCE = ("data.source.n_train=100", "data.source.n_val=20")


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 12, 12), dtype=np.uint8)


def _prepare(path: Path, capsys: pytest.CaptureFixture):
    overrides = ("data/target=npz", f"data.target.path={path}", "data.target.val_per_class=2")
    return run_in_process("prepare", *overrides, capsys=capsys)


@pytest.fixture
def npz_dir(workdir: Path) -> Path:
    write_params(workdir, compose(*SMALL_SOURCE))
    return workdir


def _refused(path: Path, capsys, *named: str) -> None:
    t0 = now_ms()
    _prepare(path, capsys).named(f"{path}: ", *named)
    assert statuses("prepare", t0) == [], "nothing was logged for data that cannot be used"
    assert not Path("outputs/prepare").exists() and temp_folders(Path()) == []


def test_item5_nan_pixels_are_refused_naming_the_file(npz_dir, capsys):
    x = _images(200).astype(np.float32)
    x[[3, 50, 170], 4, 4] = np.nan
    np.savez(npz_dir / "nan.npz", x=x, y=np.arange(200) % 10)
    _refused(npz_dir / "nan.npz", capsys, "NaN or infinite values in 3 of 200 rows")


def test_item5_a_single_class_is_refused(npz_dir, capsys):
    np.savez(npz_dir / "one.npz", x=_images(60), y=np.full(60, 7))
    _refused(npz_dir / "one.npz", capsys, "y holds 1 class(es); at least 2 are needed")


@pytest.mark.parametrize(
    ("arrays", "named"),
    [
        ({"x": _images(50)}, "needs arrays 'x' and 'y'; missing ['y']"),
        ({"x": np.array(["a"] * 50), "y": np.arange(50) % 5}, "x must hold numbers"),
        ({"x": _images(50), "y": (np.arange(50) % 5) / 2}, "y must be integer class indices"),
        ({"x": _images(50), "y": np.arange(49) % 5}, "y must be (N,) with N = len(x)"),
        ({"x": _images(50) * -1.0, "y": np.arange(50) % 5}, "x values must lie in [0, 1]"),
        ({"x": _images(50), "y": np.arange(50) % 5 - 1}, "class indices >= 0"),
        ({"x": _images(50), "y": np.arange(50) % 5, "classes": ["a", "b"]}, "has no name"),
    ],
)
def test_item5_malformed_arrays_are_named_with_the_file(npz_dir, capsys, arrays, named):
    np.savez(npz_dir / "bad.npz", **arrays)
    _refused(npz_dir / "bad.npz", capsys, named)


def test_item5_a_damaged_file_is_blamed_on_the_file_not_on_the_loader(npz_dir, capsys):
    good = npz_dir / "good.npz"
    np.savez(good, x=_images(100), y=np.arange(100) % 10)
    cut = npz_dir / "cut.npz"
    cut.write_bytes(good.read_bytes()[:3000])
    _refused(cut, capsys, "not a readable .npz file")
    out = _prepare(cut, capsys)
    assert "_target_" not in out.err
    with zipfile.ZipFile(npz_dir / "zip.npz", "w") as z:
        z.writestr("x.npy", b"\x93NUMPY garbage")
        z.writestr("y.npy", b"")
    _refused(npz_dir / "zip.npz", capsys, "not a readable .npz file")


def test_item5_a_damaged_torchvision_file_is_named_as_the_file_not_the_loader(npz_dir, capsys):
    raw = npz_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (raw / name).write_bytes(np.random.default_rng(0).bytes(1000))
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"")
    t0 = now_ms()
    out = run_in_process(
        "prepare", "data/target=mnist", f"data.target.root={npz_dir}", capsys=capsys
    )
    line = out.named(f"{raw / 'train-images-idx3-ubyte'}: MNIST cannot read it (AssertionError")
    assert line.endswith(
        "expected the published MNIST files in torchvision's layout, unchanged "
        "(Graftlab never downloads)"
    )
    assert "_target_" not in line and "data.target=" not in line
    assert statuses("prepare", t0) == []
    assert not Path("outputs/prepare").exists() and temp_folders(Path()) == []


def test_item5_too_few_examples_per_class_are_named(npz_dir, capsys):
    y = np.array([0] * 40 + [1] * 2)
    np.savez(npz_dir / "few.npz", x=_images(42), y=y)
    _refused(npz_dir / "few.npz", capsys, "every class needs at least 3 rows", "[40, 2]")


def test_item5_labels_with_gaps_are_mapped_and_keep_their_names(npz_dir, capsys):
    labels = np.array([0, 1, 2, 3, 4, 6, 7, 8, 9, 11])
    y = labels[np.arange(300) % 10]
    np.savez(npz_dir / "gaps.npz", x=_images(300), y=y)
    t0 = now_ms()
    assert _prepare(npz_dir / "gaps.npz", capsys).code == 0  # was: val_per_class ... [1, -1]
    assert statuses("prepare", t0) == ["FINISHED"]
    card = json.loads(Path("outputs/prepare/target/card.json").read_text())
    assert card["classes"] == [str(v) for v in labels]
    assert card["recipe"]["label_map"] == {str(v): int(v) for v in labels}
    for split in card["splits"].values():
        assert len(split["class_counts"]) == 10 and min(split["class_counts"]) >= 1
    domain = load_domain(Path("outputs/prepare/target"))
    assert set(np.unique(domain.splits["train"].y)) == set(range(10))


def test_item6_a_single_class_test_split_stops_evaluate_naming_the_data(workspace, capsys):
    folder = Path("outputs/prepare/target")
    target = load_domain(folder)
    test = target.splits["test"]
    keep = test.y == 0
    splits = {**target.splits, "test": Split(test.x[keep], test.y[keep])}
    save_domain(Domain(target.name, target.classes, splits, target.recipe), folder)
    t0 = now_ms()
    run_in_process("evaluate", capsys=capsys).named(
        "outputs/prepare/target: split 'test' has no example of class(es)"
    )
    assert statuses("evaluate", t0) == []
    assert not Path("outputs/evaluate").exists()
