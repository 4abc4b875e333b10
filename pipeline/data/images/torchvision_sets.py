"""torchvision's own dataset classes (MNIST, USPS, SVHN, CIFAR-10, ...) read from your disk.

The class is chosen in the config (``dataset: {_target_: torchvision.datasets.MNIST, _partial_:
true}``) and always built with ``download=False``: Graftlab never downloads. Each configured split
(``splits: {train: {train: true}, test: {train: false}}``: the class's own arguments per split)
is decoded once through the class's ``__getitem__`` (PIL images) into the decode cache; a split
the dataset lacks (val, usually) is carved from train. The files torchvision expects are checked
before the class is built, so a root without them fails with the missing file named; whatever the
class raises while reading them names the damaged file (one failing the MD5 check, or the one its
reader was reading), never the loader.

torchvision verifies the published MD5 sums of the CIFAR and SVHN files before reading them,
which also guards CIFAR's pickled batches: only the published bytes are ever unpickled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np

from pipeline.data.domain import Domain
from pipeline.data.images.decode import DecodeCache, Decoded, check_memory, decode, file_stats
from pipeline.data.images.sampling import split_decoded, subsample
from pipeline.errors import ConfigError, DataError


def dataset_class(dataset: Callable) -> type:
    """The class behind a configured constructor (``functools.partial`` of a class, or a class)."""
    return dataset.func if isinstance(dataset, partial) else dataset


def expected_files(cls: type, root: Path) -> list[Path] | None:
    """The files torchvision's ``cls`` reads under ``root``, for the classes whose layout we
    know (None for others: their whole root is then digested for the cache)."""
    from torchvision import datasets as tv

    if cls in (tv.MNIST, tv.FashionMNIST, tv.KMNIST):
        raw = root / cls.__name__ / "raw"
        return [raw / Path(name).stem for name, _ in cls.resources]
    if cls is tv.USPS or cls is tv.SVHN:
        return [root / filename for _, filename, _ in cls.split_list.values()]
    if issubclass(cls, tv.CIFAR10):
        names = [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return [root / cls.base_folder / n for n in names]
    return None


def _check_files(cls: type, root: Path, splits: Mapping[str, dict], key: str) -> list[str]:
    """Relative paths of the files to digest; raises naming the first missing one."""
    if not root.is_dir():
        raise DataError(root, f"not a folder ({key}.root): the {cls.__name__} files go there")
    files = expected_files(cls, root)
    if files is None:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    if cls.__name__ in ("USPS", "SVHN"):  # one file per split: only the configured splits'
        for name, kw in splits.items():
            if _split_name(cls, kw) not in cls.split_list:
                where = f"{key}.splits.{name}.{'split' if 'split' in kw else 'train'}"
                value = kw.get("split", kw.get("train"))
                allowed = f"a {cls.__name__} split: " + (
                    ", ".join(cls.split_list) if "split" in kw else "true or false"
                )
                raise ConfigError(where, value, allowed)
        wanted = {cls.split_list[_split_name(cls, kw)][1] for kw in splits.values()}
        files = [f for f in files if f.name in wanted]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(
            missing[0],
            f"missing: {cls.__name__} under {root} needs "
            f"{[str(f.relative_to(root)) for f in files]} (torchvision's layout; Graftlab never "
            "downloads)",
        )
    return [str(f.relative_to(root)) for f in files]


def _split_name(cls: type, kwargs: dict) -> str:
    if "split" in kwargs:
        return kwargs["split"]
    return "train" if kwargs.get("train", True) else "test"


def _build(dataset: Callable, root: Path, kwargs: dict, key: str, files: list[str]) -> object:
    """``dataset(root=..., download=False, **kwargs)``; arguments the class does not take are
    the config's fault, anything it raises while reading its files is the files' (named)."""
    import inspect

    cls = dataset_class(dataset)
    try:
        inspect.signature(dataset).bind(root=str(root), download=False, **kwargs)
    except TypeError as err:
        allowed = f"arguments of {cls.__name__} ({err})"
        raise ConfigError(f"{key}.splits", kwargs, allowed) from err
    try:
        return dataset(root=str(root), download=False, **kwargs)
    except MemoryError:
        raise
    except Exception as err:  # whatever its reader raises on bytes it cannot parse
        raise unreadable(cls, root, [root / f for f in files], err) from err


def published_md5(cls: type, root: Path) -> dict[Path, str]:
    """The MD5 sums torchvision checks the files of ``cls`` against before reading them (SVHN,
    CIFAR; it reads MNIST's and USPS's files unchecked)."""
    from torchvision import datasets as tv

    if cls is tv.SVHN:
        return {root / name: md5 for _, name, md5 in cls.split_list.values()}
    if issubclass(cls, tv.CIFAR10):
        pairs = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
        return {root / cls.base_folder / name: md5 for name, md5 in pairs}
    return {}


def _file_read_when(err: BaseException, files: list[Path]) -> Path | None:
    """The file among ``files`` that the innermost frame of ``err``'s traceback was reading
    (a local variable holding its path: torchvision's readers take the path as an argument)."""
    import os
    import traceback

    wanted = {os.path.abspath(f): f for f in files}
    frames = [frame for frame, _ in traceback.walk_tb(err.__traceback__)]
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            found = wanted.get(os.path.abspath(value)) if isinstance(value, str | Path) else None
            if found is not None:
                return found
    return None


def _reason(err: BaseException) -> str:
    """``Type: message``, or the failing source line when the message is empty (an assert)."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)
    if str(err) or not frames:
        return f"{type(err).__name__}: {err}"
    last = frames[-1]
    return f"{type(err).__name__} at {Path(last.filename).name}:{last.lineno}: {last.line}"


def unreadable(cls: type, root: Path, files: list[Path], err: BaseException) -> DataError:
    """The error for files of ``cls`` that torchvision could not read, naming them: those that
    are not the published bytes (an MD5 torchvision knows), else the one it was reading when it
    failed, else all of them."""
    from torchvision.datasets.utils import check_integrity

    expected = (
        f"expected the published {cls.__name__} files in torchvision's layout, unchanged "
        "(Graftlab never downloads)"
    )
    md5 = published_md5(cls, root)
    changed = [f for f in files if f in md5 and not check_integrity(str(f), md5[f])]
    if changed:
        names = [str(f.relative_to(root)) for f in changed]
        problem = f"not the published {cls.__name__} file(s) {names}: torchvision's MD5 check fails"
        return DataError(changed[0] if len(changed) == 1 else root, f"{problem}; {expected}")
    failed = _file_read_when(err, files)
    if failed is not None:
        return DataError(failed, f"{cls.__name__} cannot read it ({_reason(err)}); {expected}")
    names = [str(f.relative_to(root)) for f in files] if 0 < len(files) <= 8 else "its files"
    return DataError(root, f"{cls.__name__} cannot read {names} ({_reason(err)}); {expected}")


def make_torchvision_domain(
    *,
    dataset: Callable,
    root: str,
    splits: Mapping[str, dict],
    image_size: int,
    channels: int,
    seed: int,
    name: str,
    classes: list[str] | None = None,
    test_fraction: float = 0.2,
    val_per_class: int = 20,
    max_images: int | None = None,
    workers: int = 2,
    cache: str | None = None,
    key: str = "data.target",
) -> Domain:
    """A labelled image domain from a torchvision dataset class and its files under ``root``.

    Args:
        dataset: The class (or a ``functools.partial`` of it) called as
            ``dataset(root=..., download=False, **splits[split])``.
        root: The folder torchvision would download into.
        splits: Split name (train, val, test) -> the class's arguments for it; train is needed.
        image_size: Output height and width.
        channels: 1 (grayscale) or 3 (RGB); every image is converted to it.
        seed: Seed of carved splits and of ``max_images``' sample.
        name: Dataset name in reports and MLflow.
        classes: Class names, index = label (default: the class's ``classes``, else "0", "1",
            ...). Give digit datasets the same names so source and target match by name.
        test_fraction: Share of train held out for test when no test split is configured.
        val_per_class: Validation images per class carved from train when none is configured.
        max_images: Read at most this many images per split (a seeded stratified sample).
        workers: Decoding worker processes.
        cache: Decode cache folder (None: decode every time).
        key: Config key of this dataset, for error messages.
    """
    cls, path = dataset_class(dataset), Path(root)
    if "train" not in splits or not set(splits) <= {"train", "val", "test"}:
        raise ConfigError(f"{key}.splits", dict(splits), "train and optionally val, test")
    if channels not in (1, 3):
        raise ConfigError(f"{key}.channels", channels, "1 (grayscale) or 3 (RGB)")
    files = _check_files(cls, path, splits, key)
    digest = file_stats(path, files)
    store = DecodeCache(cache)
    shape = (channels, image_size, image_size)
    parts = {}
    for split, kwargs in splits.items():
        recipe = {
            "reader": f"{cls.__module__}.{cls.__qualname__}",
            "arguments": dict(kwargs),
            "root": str(path.resolve()),
            "files": digest,
            "channels": channels,
            "size": image_size,
            "max_images": max_images,
            "seed": seed,
        }

        def make(kwargs: dict = kwargs) -> Decoded:
            ds = _build(dataset, path, kwargs, key, files)
            labels = np.asarray([int(t) for t in _targets(ds)])
            keep = subsample(labels, max_images, seed, f"{key}.max_images")
            check_memory(len(keep), shape, path, key)
            from torch.utils.data import Subset

            x, y = decode(
                Subset(ds, keep.tolist()),
                channels=channels,
                size=image_size,
                name_of=lambda i: f"{path} ({cls.__name__} item {keep[i]})",
                workers=workers,
            )
            own = getattr(ds, "classes", None)  # not every torchvision class names its classes
            return Decoded(x, y, tuple(str(c) for c in own) if own else ())

        parts[split] = store.get(recipe, make, lambda n: check_memory(n, shape, path, key))[0]
    labels = int(max(p.y.max() for p in parts.values())) + 1
    names = tuple(classes or parts["train"].classes or (str(c) for c in range(labels)))
    if len(names) < labels:
        raise ConfigError(
            f"{key}.classes", classes, f"{labels} class names (labels 0..{labels - 1})"
        )
    split_data = split_decoded(parts, seed, test_fraction, val_per_class, key, path)
    recipe = {
        "loader": f"{cls.__module__}.{cls.__qualname__}",
        "root": str(path),
        "splits": {k: dict(v) for k, v in splits.items()},
        "channels": channels,
        "seed": seed,
        "val_per_class": val_per_class,
        "max_images": max_images,
        "resize": "PIL bilinear, antialiased",
    }
    return Domain(name, names, split_data, recipe)


def _targets(ds: object) -> list:
    """Labels of a torchvision dataset without decoding its images (``targets`` or, for SVHN,
    ``labels``: torchvision does not name them uniformly)."""
    for attr in ("targets", "labels"):
        if hasattr(ds, attr):
            return list(getattr(ds, attr))
    return [ds[i][1] for i in range(len(ds))]
