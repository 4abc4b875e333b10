"""Property-based fault injection (hypothesis): malformed npz files thrown at prepare, random
override values thrown at transfer. Every run ends in exactly one of two ways: success with
complete outputs, or exit 2 with one line naming the problem. Never a traceback, never a partial
output or temp folder.

The examples are derandomised and bounded, so the suite is the same, and fast, on every run.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from pipeline.data.store import load_domain
from stages import tune
from tests.conftest import compose, write_params
from tests.faults.conftest import SMALL_TRANSFER, run_in_process, temp_folders

BOUNDED = settings(
    max_examples=25,
    deadline=None,
    database=None,
    derandomize=True,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: a failure is reported as found
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TINY_SOURCE = ("data.source.n_train=40", "data.source.n_val=20")


def _check(outcome, stage: str, root: Path) -> bool:
    """The outcome is a success or one named error; no temp folder either way."""
    assert outcome.code in (0, 2), outcome.err[-3000:]
    assert "Traceback" not in outcome.err, outcome.err[-3000:]
    if outcome.code == 2:
        assert len(outcome.error_lines) == 1, outcome.err[-3000:]
        assert outcome.error_lines[0].startswith(f"error in stage {stage}: ")
    assert temp_folders(root) == []
    return outcome.code == 0


# --------------------------------------------------------------------------- npz -> prepare


DEFECTS = (
    "no rows", "empty images", "vector rows", "5-D", "strings", "complex", "booleans",
    "negative", "above 255", "huge", "NaN", "inf", "float labels", "text labels",
    "labels short", "negative label", "one class", "label gaps", "few names", "2-D names",
    "no x", "no y", "truncated", "garbage", "bad zip", "few rows", "channels last", "RGB",
)  # fmt: skip


@st.composite
def npz_bytes(draw: st.DrawFn) -> bytes:
    """A valid .npz file (1 in 4) or one with one to three defects."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    defects = draw(st.sets(st.sampled_from(DEFECTS), min_size=1, max_size=3))
    defects = defects if draw(st.integers(0, 3)) else set()
    n = 0 if "no rows" in defects else 12 if "few rows" in defects else 90
    side = 0 if "empty images" in defects else draw(st.integers(1, 12))
    shape = {"vector rows": (n,), "5-D": (n, 1, side, side, 2)}
    x = rng.integers(0, 256, size=shape.get(next(iter(defects & set(shape)), ""), (n, side, side)))
    if "channels last" in defects or "RGB" in defects:
        x = np.stack(
            [x] * (3 if "RGB" in defects else 1), axis=-1 if "channels last" in defects else 1
        )
    x = x.astype(np.float32) / draw(st.sampled_from([1.0, 255.0]))
    for defect, change in (
        ("negative", lambda a: a - 2),
        ("above 255", lambda a: a + 300),
        ("huge", lambda a: a * 1e30),
        ("strings", lambda a: a.astype("U3")),
        ("complex", lambda a: a.astype(np.complex64)),
        ("booleans", lambda a: a > 0.5),
    ):
        if defect in defects:
            x = change(x)
    for defect, value in (("NaN", np.nan), ("inf", np.inf)):
        if defect in defects and x.size and x.dtype.kind == "f":
            x.flat[rng.integers(0, x.size)] = value
    k = 1 if "one class" in defects else draw(st.integers(2, 6))
    labels = np.arange(k) * (2 if "label gaps" in defects else 1) - ("negative label" in defects)
    y = labels[np.arange(max(0, n - ("labels short" in defects))) % k]
    y = y.astype(
        np.float32 if "float labels" in defects else "U2" if "text labels" in defects else int
    )
    arrays = {"x": x, "y": y}
    if "few names" in defects:
        arrays["classes"] = np.array(["a"])
    elif "2-D names" in defects:
        arrays["classes"] = np.array([["a", "b"], ["c", "d"]])
    elif draw(st.booleans()):
        arrays["classes"] = np.array([f"class {i}" for i in range(int(labels.max()) + 1)])
    for name in ("x", "y"):
        if f"no {name}" in defects:
            del arrays[name]
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    data = buffer.getvalue()
    if "truncated" in defects:
        return data[: draw(st.integers(0, max(0, len(data) - 1)))]
    if "garbage" in defects:
        return rng.bytes(draw(st.integers(0, 2000)))
    if "bad zip" in defects:
        zipped = io.BytesIO()
        with zipfile.ZipFile(zipped, "w") as z:
            z.writestr("x.npy", rng.bytes(64))
            z.writestr("y.npy", b"\x93NUMPY\x01\x00")
        return zipped.getvalue()
    return data


@BOUNDED
@given(
    data=npz_bytes(),
    split=st.tuples(st.sampled_from([0.2, 0.5, 0.95]), st.sampled_from([1, 2, 5])),
)
def test_any_npz_file_is_prepared_or_refused_in_one_line(mlflow_store, data, split):
    fraction, val = split
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder):
        root = Path(folder)
        write_params(root, compose(*TINY_SOURCE))
        (root / "data.npz").write_bytes(data)
        capture = CaptureStderr()
        overrides = (
            "data/target=npz",
            f"data.target.path={root / 'data.npz'}",
            f"data.target.test_fraction={fraction}",
            f"data.target.val_per_class={val}",
        )
        with capture:
            outcome = run_in_process("prepare", *overrides, capsys=capture)
        event("prepared" if outcome.code == 0 else "refused")
        if _check(outcome, "prepare", root):
            target = load_domain(root / "outputs/prepare/target")
            assert target.num_classes >= 2
            assert all(np.isfinite(s.x).all() for s in target.splits.values())
        else:
            assert not (root / "outputs/prepare").exists()


# ----------------------------------------------------------------- overrides -> transfer

KEYS = {
    "transfer.epochs": st.integers(-2, 4),
    "transfer.batch_size": st.integers(-1, 300),
    "transfer.seeds": st.integers(-1, 2),
    "transfer.freeze_groups": st.one_of(st.integers(-1, 6), st.just("all")),
    "transfer.arms.freeze_k.init_groups": st.one_of(st.integers(-1, 6), st.just("all")),
    "transfer.head_lr": st.floats(allow_nan=True, allow_infinity=True),
    "transfer.arms.scratch.backbone_lr": st.floats(-1, 1e40),
    "transfer.lr_decay": st.floats(-1, 3),
    "transfer.weight_decay": st.floats(-1, 1e6),
    "transfer.primary": st.sampled_from(["freeze_k", "scratch", "l2sp", "nope"]),
    "transfer.run": st.sampled_from(["[scratch,freeze_k]", "[]", "[freeze_k]", "scratch"]),
    "data.labels_per_class": st.integers(-1, 200),
    "seed": st.integers(-2, 2**33),
    "trainer.precision": st.sampled_from(["32-true", "bf16-mixed", "17", "64"]),
    "trainer.threads": st.integers(-1, 3),
    "transfer.optimizer._target_": st.sampled_from(
        ["torch.optim.AdamW", "nowhere.opt", "os.getcwd"]
    ),
    "transfer.augment": st.sampled_from(["null", "3", "{_target_: builtins.print}"]),
    "tune.enabled": st.booleans(),
}
ANY = st.one_of(
    st.integers(-10, 10),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text("abc ,:[]{}'", max_size=6),
    st.booleans(),
    st.just(None),
    st.lists(st.integers(0, 3), max_size=3),
)


def _hydra(value: object) -> str:
    """A value as Hydra override text (strings quoted unless they are override syntax)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "nan" if value != value else repr(value)
    if isinstance(value, str):
        if value.startswith(("[", "{")) or value in ("null", "all") or value.isidentifier():
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


@pytest.fixture(scope="module")
def transfer_workspace(pretrained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    root = tmp_path_factory.mktemp("properties")
    shutil.copytree(pretrained / "outputs", root / "outputs")
    write_params(root, compose("tune.enabled=false", *SMALL_TRANSFER))
    with contextlib.chdir(root):
        tune.run(compose("tune.enabled=false"))
    return root


@BOUNDED
@given(
    overrides=st.dictionaries(
        st.sampled_from(sorted(KEYS)), st.just(None), min_size=1, max_size=3
    ).flatmap(lambda keys: st.fixed_dictionaries({k: st.one_of(KEYS[k], ANY) for k in keys}))
)
def test_any_override_values_train_or_are_refused_in_one_line(transfer_workspace, overrides):
    root = transfer_workspace
    argv = [f"{k}={_hydra(v)}" for k, v in overrides.items()]
    index = root / "outputs/transfer/models/index.json"
    before = index.read_text() if index.exists() else None
    capture = CaptureStderr()
    with contextlib.chdir(root), capture:
        outcome = run_in_process("transfer", *argv, capsys=capture)
    event("trained" if outcome.code == 0 else "refused")
    if _check(outcome, "transfer", root):
        rows = json.loads(index.read_text())["runs"]
        assert rows and all((root / "outputs/transfer" / r["path"]).is_file() for r in rows)
    else:  # the previous outputs, whole, or none
        assert (index.read_text() if index.exists() else None) == before


class CaptureStderr:
    """``capsys``'s ``readouterr().err`` for use inside hypothesis examples (capsys is
    function-scoped: it would mix the examples' output)."""

    def __enter__(self) -> CaptureStderr:
        self._buffer = io.StringIO()
        self._redirect = contextlib.redirect_stderr(self._buffer)
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._redirect.__exit__(*exc)

    def readouterr(self) -> CaptureStderr:
        return self

    @property
    def err(self) -> str:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text
