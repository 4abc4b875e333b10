"""Your own images: ImageFolder and torchvision's formats read from local files, decoded once into
a cache, class sets matched by name, and every kind of bad input stopped before training."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torchvision
from PIL import Image

from pipeline.data.classes import align_classes
from pipeline.data.domain import Domain, Split
from pipeline.data.images import folder as folder_module
from pipeline.data.images.folder import make_imagefolder_domain
from pipeline.data.images.torchvision_sets import make_torchvision_domain
from pipeline.data.images.transforms import to_channels
from pipeline.errors import ConfigError, DataError
from stages import prepare
from tests import formats
from tests.conftest import compose, decode_entries, write_params


def _folder(root: Path, **kw) -> Domain:
    args = {"image_size": 16, "channels": 1, "seed": 0, "val_per_class": 2, "workers": 0}
    return make_imagefolder_domain(root=str(root), **{**args, **kw})


def test_imagefolder_of_gray_and_rgb_pngs_of_odd_sizes_keeps_folder_names(tmp_path):
    classes = formats.shapes_folder(tmp_path / "shapes", per_class=12)
    domain = _folder(tmp_path / "shapes", channels=3, image_size=20)
    assert domain.name == "shapes" and domain.classes == tuple(classes)
    for split in domain.splits.values():
        assert split.x.shape[1:] == (3, 20, 20) and split.x.dtype == np.float32
        assert split.x.min() >= 0 and split.x.max() <= 1
    sizes = {k: len(v) for k, v in domain.splits.items()}
    assert sum(sizes.values()) == 48 and sizes["val"] == 8  # 2 per class
    # every image is in exactly one split: no leak between train, val and test
    rows = np.concatenate([v.x.reshape(len(v), -1) for v in domain.splits.values()])
    assert len(np.unique(rows, axis=0)) == 48


def test_decoded_pixels_are_the_files_own(tmp_path):
    formats.png_folder(tmp_path / "f", n_per_class=6, classes=3, size=16)
    domain = _folder(tmp_path / "f", val_per_class=1)
    x = np.concatenate([s.x for s in domain.splits.values()])
    y = np.concatenate([s.y for s in domain.splits.values()])
    files = sorted((tmp_path / "f").glob("*/*.png"))
    written = {(np.asarray(Image.open(f)).tobytes(), int(f.parent.name[1:])) for f in files}
    decoded = {
        ((v * 255).round().astype(np.uint8)[0].tobytes(), int(c)) for v, c in zip(x, y, strict=True)
    }
    assert decoded == written


def test_split_folders_are_kept_and_a_missing_val_is_carved_from_train(tmp_path):
    formats.png_folder(tmp_path / "d" / "train", n_per_class=8, classes=3, seed=1)
    formats.png_folder(tmp_path / "d" / "test", n_per_class=2, classes=3, seed=2)
    domain = _folder(tmp_path / "d", layout="splits")
    assert len(domain.splits["test"]) == 6 and len(domain.splits["val"]) == 6
    assert len(domain.splits["train"]) == 24 - 6
    (tmp_path / "d" / "test" / "c9").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "d" / "test" / "c9" / "a.png")
    with pytest.raises(DataError, match=r"d/test: class folders differ from train"):
        _folder(tmp_path / "d", layout="splits")


@pytest.mark.parametrize("option", ["mnist", "usps", "svhn", "cifar10"])
def test_torchvision_formats_read_from_local_files(option, tmp_path, monkeypatch):
    writer = {
        "mnist": formats.mnist_root,
        "usps": formats.usps_root,
        "svhn": formats.svhn_root,
        "cifar10": lambda root: formats.cifar10_root(root, 4),
    }[option]
    root = writer(tmp_path / option)
    formats.trust_written_files(monkeypatch, root)
    cfg = compose(
        f"data/target={option}",
        f"data.target.root={root}",
        "data.target.val_per_class=1",
        f"paths.decoded={tmp_path / 'cache'}",
        "data.image_size=12",
        "data.channels=3",
    )
    from stages._build import build_domain

    domain = build_domain(cfg, "target")
    assert domain.name == option and domain.num_classes == 10
    assert domain.classes[0] == ("airplane" if option == "cifar10" else "0")
    # the official test split as written, converted to 3 channels at 12 x 12
    test = domain.splits["test"]
    assert test.x.shape[1:] == (3, 12, 12)
    per_class = {"mnist": 6, "usps": 6, "svhn": 6, "cifar10": 4}[option]
    assert np.bincount(test.y).tolist() == [per_class] * 10
    assert len(domain.splits["val"]) == 10


def test_mnist_pixels_and_labels_come_through_unchanged(tmp_path):
    root = formats.mnist_root(tmp_path / "m")
    domain = make_torchvision_domain(
        dataset=torchvision.datasets.MNIST,
        root=str(root),
        splits={"train": {"train": True}, "test": {"train": False}},
        image_size=28,
        channels=1,
        seed=0,
        name="mnist",
        val_per_class=1,
        workers=0,
    )
    x, y = formats.class_images(6, 10, 28, 1)  # what the t10k files hold
    test = domain.splits["test"]
    np.testing.assert_array_equal((test.x[:, 0] * 255).round().astype(np.uint8), x)
    np.testing.assert_array_equal(test.y, y)


def test_a_root_without_the_files_torchvision_expects_names_the_missing_file(tmp_path):
    (tmp_path / "empty").mkdir()
    cfg_args = ("data/source=svhn", f"data.source.root={tmp_path / 'empty'}")
    cfg = compose(*cfg_args, tiny=False)
    from stages._build import build_domain

    with pytest.raises(DataError, match=r"empty/train_32x32\.mat: missing: SVHN"):
        build_domain(cfg, "source")
    # a split SVHN does not have: a KeyError under the whole data.source dict before
    bad = compose(*cfg_args, "data.source.splits.test.split=tset", tiny=False)
    with pytest.raises(ConfigError) as err:
        build_domain(bad, "source")
    assert str(err.value) == (
        "data.source.splits.test.split='tset' is not allowed; expected a SVHN split: train, test, "
        "extra"
    )
    # present but not the published files: torchvision's MD5 check refuses them, named
    root = formats.cifar10_root(tmp_path / "c", 2)
    cfg = compose("data/target=cifar10", f"data.target.root={root}")
    with pytest.raises(DataError, match=r"not the published CIFAR10 file\(s\) \['cifar-10-b"):
        build_domain(cfg, "target")


@pytest.mark.parametrize(
    ("option", "damaged", "reason"),
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte", "AssertionError at mnist.py"),
        ("mnist", "MNIST/raw/t10k-labels-idx1-ubyte", "AssertionError at mnist.py"),
        ("usps", "usps.t.bz2", "OSError: Invalid data stream"),
        ("svhn", "train_32x32.mat", "ValueError"),
        ("cifar10", "cifar-10-batches-py/data_batch_3", "UnpicklingError"),
    ],
)
def test_a_damaged_torchvision_file_is_named_as_the_file(
    option, damaged, reason, workdir, monkeypatch
):
    writer = {"mnist": formats.mnist_root, "usps": formats.usps_root, "svhn": formats.svhn_root}
    root = writer.get(option, lambda r: formats.cifar10_root(r, 2))(workdir / option)
    (root / damaged).write_bytes(np.random.default_rng(0).bytes(1000))
    formats.trust_written_files(monkeypatch, root)  # past the MD5 checks: torchvision reads it
    cfg = compose(f"data/target={option}", f"data.target.root={root}", "data.target.workers=0")
    from stages._build import build_domain

    with pytest.raises(DataError) as err:
        build_domain(cfg, "target")
    cls = {"cifar10": "CIFAR10"}.get(option, option.upper())
    assert str(err.value).startswith(f"{root / damaged}: {cls} cannot read it ({reason}")
    assert f"expected the published {cls} files in torchvision's layout" in str(err.value)


def test_second_prepare_reads_the_cache_and_a_changed_file_is_decoded_again(workdir, monkeypatch):
    formats.png_folder(workdir / "imgs", n_per_class=8, classes=3)
    cfg = compose(
        "data/target=imagefolder",
        f"data.target.root={workdir / 'imgs'}",
        "data.target.val_per_class=2",
        "data.target.workers=2",  # the worker-process path
        "data.source.n_train=100",
    )
    decoded, real = [], folder_module.decode
    monkeypatch.setattr(folder_module, "decode", lambda *a, **k: decoded.append(1) or real(*a, **k))
    prepare.run(cfg)
    first = json.loads(Path("outputs/prepare/target/card.json").read_text())
    (entry,) = decode_entries("outputs/decoded")
    prepare.run(cfg)
    assert len(decoded) == 1
    assert json.loads(Path("outputs/prepare/target/card.json").read_text()) == first
    # a file that changed on disk changes the cache key: decoded again, the old entry pruned
    Image.new("L", (20, 20), 255).save(workdir / "imgs" / "c0" / "0000.png")
    prepare.run(cfg)
    assert len(decoded) == 2
    (new,) = decode_entries("outputs/decoded")
    assert new.name != entry.name
    assert json.loads(Path("outputs/prepare/target/card.json").read_text()) != first
    # a dataset that reads nothing from disk leaves the cache empty
    prepare.run(compose("data.source.n_train=100"))
    assert not list(decode_entries("outputs/decoded"))


def test_source_and_target_classes_are_matched_by_name(tmp_path, monkeypatch):
    source = Domain("s", ("a", "b", "c"), {"train": Split(np.zeros((3, 1)), np.array([0, 1, 2]))})
    target = Domain("t", ("c", "a", "b"), {"train": Split(np.zeros((3, 1)), np.array([0, 1, 2]))})
    aligned = align_classes(source, target)
    assert aligned.classes == ("a", "b", "c")
    assert aligned.splits["train"].y.tolist() == [2, 0, 1]  # c, a, b in the source's order
    other = Domain("o", ("a", "b", "z"), target.splits)
    with pytest.raises(ConfigError, match=r"data\.match_classes.*only in the source \['c'\], "):
        align_classes(source, other)


def test_svhn_to_mnist_prepares_with_one_class_order(workdir, monkeypatch):
    svhn, mnist = formats.svhn_root(workdir / "svhn"), formats.mnist_root(workdir / "mnist")
    formats.trust_written_files(monkeypatch, svhn)
    cfg = compose(
        "data/source=svhn",
        "data/target=mnist",
        f"data.source.root={svhn}",
        f"data.target.root={mnist}",
        "data.source.val_per_class=1",
        "data.target.val_per_class=1",
        "data.match_classes=true",
        tiny=False,
    )
    prepare.run(cfg)
    cards = [
        json.loads(Path(f"outputs/prepare/{r}/card.json").read_text()) for r in ("source", "target")
    ]
    assert cards[0]["classes"] == cards[1]["classes"] == formats.DIGITS


def test_channels_convert_between_gray_and_rgb():
    gray = Domain(
        "g", ("a",), {"train": Split(np.full((2, 1, 2, 2), 0.5, np.float32), np.zeros(2, int))}
    )
    rgb = to_channels(gray, 3)
    assert rgb.input_shape == (3, 2, 2) and np.all(rgb.splits["train"].x == 0.5)
    back = to_channels(rgb, 1)
    np.testing.assert_allclose(back.splits["train"].x, 0.5, rtol=1e-6)


def _bad_png_folder(root: Path, problem: str) -> Path:
    formats.png_folder(root, n_per_class=4, classes=2)
    if problem == "empty class":
        (root / "c9").mkdir()
        return root / "c9"
    bad = root / "c1" / "0005.png"
    if problem == "truncated":
        bad.write_bytes(bad.read_bytes()[:40])
    elif problem == "unreadable":
        bad.write_bytes(b"this is no image")
    elif problem == "16-bit":
        Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(bad)
    return bad


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("empty class", "empty class folder"),
        ("truncated", "truncated"),
        ("unreadable", "cannot identify image file"),
        ("16-bit", "image mode I;16"),
    ],
)
def test_bad_image_folders_fail_naming_the_file_before_anything_is_written(
    problem, message, workdir
):
    bad = _bad_png_folder(workdir / "imgs", problem)
    cfg = compose(
        "data/target=imagefolder", f"data.target.root={workdir / 'imgs'}", "data.target.workers=2"
    )
    with pytest.raises(DataError, match=message) as err:
        prepare.run(cfg)
    assert str(err.value).startswith(str(bad))
    assert not Path("outputs/prepare").exists()
    assert not list(decode_entries("outputs/decoded"))


@pytest.mark.parametrize("domain", ["source", "target"])
def test_a_single_class_folder_is_named_as_the_folder_it_is(domain, workdir):
    formats.png_folder(workdir / "one", n_per_class=6, classes=1)
    group = (f"data/{domain}=imagefolder", f"data.{domain}.root={workdir / 'one'}")
    cfg = compose(*group, tiny=domain == "target")  # the tiny sizes are the digits source's
    with pytest.raises(DataError) as err:
        prepare.run(cfg)
    assert str(err.value) == (
        f"{workdir / 'one'}: holds 1 class (6 rows); at least 2 classes are needed to classify"
    )
    assert not Path("outputs/prepare").exists()


def test_missing_root_and_too_little_memory_fail_before_decoding(workdir, monkeypatch):
    with pytest.raises(DataError, match=r"nowhere: not a folder \(data\.target\.root\)"):
        _folder(workdir / "nowhere")
    formats.png_folder(workdir / "imgs", n_per_class=4, classes=2)

    class Tiny:
        available = 1000  # bytes

    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tiny)
    monkeypatch.setattr(folder_module, "decode", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(
        DataError, match=r"imgs: 8 images at 1x16x16 need .*\(data\.target\.max_images\)"
    ):
        _folder(workdir / "imgs", val_per_class=1)


def test_class_mismatch_in_a_same_task_run_stops_prepare(workdir):
    formats.shapes_folder(workdir / "shapes", per_class=8)
    cfg = compose(
        "data/target=imagefolder",
        f"data.target.root={workdir / 'shapes'}",
        "data.target.val_per_class=2",
        "data.match_classes=true",
    )
    with pytest.raises(ConfigError, match=r"data\.match_classes.*only in the target \['circle'"):
        prepare.run(cfg)
    assert not Path("outputs/prepare").exists()


def test_prepare_exits_2_with_one_line_naming_the_bad_file(workdir):
    bad = _bad_png_folder(workdir / "imgs", "truncated")
    cfg = compose("data/target=imagefolder", f"data.target.root={workdir / 'imgs'}")
    write_params(workdir, cfg)
    proc = subprocess.run(
        [sys.executable, "-m", "stages.prepare"], capture_output=True, text=True, cwd=workdir
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error in stage prepare: {bad}: unreadable, truncated")
    assert not (workdir / "outputs" / "prepare").exists()


def test_an_argument_the_torchvision_class_does_not_take_is_the_configs_fault(workdir):
    root = formats.mnist_root(workdir / "m")
    cfg = compose("data/target=mnist", f"data.target.root={root}", "+data.target.splits.train.x=1")
    from stages._build import build_domain

    with pytest.raises(ConfigError, match=r"data\.target\.splits=\{'train': True, 'x': 1\} is not"):
        build_domain(cfg, "target")
