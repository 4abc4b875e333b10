"""Issue 11, items 1, 6 and 7: config values are checked before any work, and explicit values
of tuned keys win (or are refused with a reason), never silently replaced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from stages import transfer, tune
from tests import formats
from tests.conftest import DIVERGING_SCRATCH, compose, write_params
from tests.faults.conftest import SMALL_TRANSFER, now_ms, run_in_process, runs, statuses


def _index() -> dict:
    return json.loads(Path("outputs/transfer/models/index.json").read_text())


def _params(stage: str, since: int, arm: str) -> dict:
    (run,) = [r for r in runs(stage, since) if r.data.tags.get("graftlab.arm") == arm]
    return run.data.params


def test_item1_explicit_values_of_tuned_keys_win_and_bad_ones_are_named(workspace, capsys, caplog):
    tune.run(compose())
    best = yaml.safe_load(Path("outputs/tune/best.yaml").read_text())
    tuned_k = best["overrides"]["transfer.freeze_groups"]
    mine = (tuned_k + 1) % 5
    assert best["base"]["transfer.head_lr"] == compose().transfer.head_lr

    # tuning off and a depth the backbone does not have: refused before any run starts
    t0 = now_ms()
    out = run_in_process(
        "transfer",
        "tune.enabled=false",
        "transfer.freeze_groups=99",
        *SMALL_TRANSFER,
        capsys=capsys,
    )
    out.named("transfer.freeze_groups=99 is not allowed", "[0, 4]")
    assert statuses("transfer", t0) == [] and not Path("outputs/transfer").exists()
    # tuning on: the refusal is the only line, no "kept instead of the tuned" warning first
    caplog.clear()
    out = run_in_process("transfer", "transfer.freeze_groups=99", *SMALL_TRANSFER, capsys=capsys)
    out.named("transfer.freeze_groups=99 is not allowed", "[0, 4]")
    assert not [r for r in caplog.records if "kept instead of the tuned" in r.getMessage()]

    # explicit values on the command line win over the study's
    t0 = now_ms()
    cli = (f"transfer.freeze_groups={mine}", "transfer.head_lr=0.0123", *SMALL_TRANSFER)
    assert run_in_process("transfer", *cli, capsys=capsys).code == 0
    index = _index()
    assert {r["freeze_groups"] for r in index["runs"] if r["arm"] == "freeze_k"} == {mine}
    assert index["kept"] == {"transfer.freeze_groups": mine, "transfer.head_lr": 0.0123}
    assert set(index["tuned"]) == set(best["overrides"]) - set(index["kept"])
    params = _params("transfer", t0, "freeze_k")
    assert float(params["head_lr"]) == 0.0123
    assert float(params["backbone_lr"]) == pytest.approx(best["overrides"]["transfer.backbone_lr"])

    # a value in params.yaml (what `dvc exp run -S` writes) that differs from the one the study
    # started from wins too; the rest stays tuned
    t0 = now_ms()
    transfer.run(compose("transfer.head_lr=0.0456", *SMALL_TRANSFER))
    assert _index()["kept"] == {"transfer.head_lr": 0.0456}
    assert {r["freeze_groups"] for r in _index()["runs"] if r["arm"] == "freeze_k"} == {tuned_k}
    assert float(_params("transfer", t0, "freeze_k")["head_lr"]) == 0.0456

    # the tune stage refuses a value for a key it searches: every trial would replace it
    t0 = now_ms()
    out = run_in_process("tune", "transfer.freeze_groups=1", capsys=capsys)
    out.named("transfer.freeze_groups=1 is not allowed", "tune.space searches it")
    assert statuses("tune", t0) == []


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("transfer.epochs=abc", "transfer.epochs='abc' is not allowed; expected an integer >= 1"),
        ("transfer.epochs=2.5", "transfer.epochs=2.5 is not allowed; expected an integer >= 1"),
        ("transfer.head_lr=nan", "transfer.head_lr=nan is not allowed; expected a number in (0,"),
        ("transfer.seeds=0", "transfer.seeds=0 is not allowed"),
        ("transfer.arms.scratch.lr_decay=2", "transfer.arms.scratch.lr_decay=2 is not allowed"),
        ("transfer.run=scratch", "transfer.run='scratch' is not allowed; expected a non-empty"),
        ("data.labels_per_class=[1]", "data.labels_per_class=[1] is not allowed"),
        ("trainer.precision=17", "trainer.precision=17 is not allowed"),
        ("+trainer.max_epochs=3", "trainer.max_epochs=3 is not allowed; expected nothing"),
        ("+trainer.bogus=1", "trainer.bogus=1 is not allowed; expected a lightning.pytorch"),
        ("trainer=tpu", "trainer='tpu' is not allowed; expected one of 'cpu', 'gpu'"),
        ("transfer.nope=1", "transfer.nope=1 is not allowed; expected an existing config key"),
        ("seed=-1", "seed=-1 is not allowed"),
        # a metric no inductive run logs: a KeyError traceback after training, exit 1, before
        (
            "transfer.monitor=val/foo",
            "transfer.monitor='val/foo' is not allowed; expected one of None",
        ),
        ("+transfer.arms.scratch.monitor=val/loss", "transfer.arms.scratch.monitor='val/loss'"),
    ],
)
def test_item6_a_wrongly_typed_or_out_of_range_value_is_one_line_before_any_work(
    workspace, capsys, override, named
):
    t0 = now_ms()
    run_in_process("transfer", *SMALL_TRANSFER, override, capsys=capsys).named(named)
    assert statuses("transfer", t0) == []
    assert not Path("outputs/transfer").exists()


FOLDER = ("data/target=imagefolder", "data.target.root={root}")


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["data.source.max_rotation=abc"], "data.source.max_rotation='abc' is not allowed; "),
        (["data.source.max_rotation=-5"], "expected a number in [0, 180] (degrees, either way)"),
        (["data.source.max_shear=abc"], "data.source.max_shear='abc' is not allowed; expected a"),
        (["data.source.max_shear=90"], "data.source.max_shear=90 is not allowed"),
        (["data.source.scale=[2,1]"], "data.source.scale=[2, 1] is not allowed; expected a range"),
        (["data.source.scale=[0,1]"], "numbers > 0 with low <= high (the zoom factor's range)"),
        (["data.source.blur_sigma=[-1,-2]"], "data.source.blur_sigma=[-1, -2] is not allowed"),
        (["data.source.max_translate=5"], "max_translate=5 is not allowed; expected a number in"),
        (["data.source.stroke_widths=[-3]"], "data.source.stroke_widths=[-3] is not allowed"),
        (["data.source.stroke_widths=[]"], "expected a non-empty list of integers in [0, 48]"),
        (["data.source.native_size=0"], "data.source.native_size=0 is not allowed"),
        (["data.source.shuffle_labels=maybe"], "shuffle_labels='maybe' is not allowed; expected "),
        (["data.source.noise_std=-1"], "data.source.noise_std=-1 is not allowed"),
        (["data.source.n_train=5"], "data.source.n_train=5 is not allowed; expected an integer"),
        (["data.source.fonts=[]"], "data.source.fonts=[] is not allowed"),
        ([*FOLDER, "data.target.workers=-1"], "data.target.workers=-1 is not allowed; expected an"),
        ([*FOLDER, "data.target.workers=abc"], "data.target.workers='abc' is not allowed"),
        (
            [*FOLDER, "data.target.layout=flat"],
            "data.target.layout='flat' is not allowed; expected",
        ),
        ([*FOLDER, "data.target.max_images=0"], "data.target.max_images=0 is not allowed"),
        ([*FOLDER, "data.target.channels=2"], "data.target.channels=2 is not allowed; expected 1"),
        (["data/target=mnist", "data.target.root=x", "data.target.classes=[0]"], "classes=[0] is"),
        (["data/target=svhn", "data.target.root=x", "data.target.splits={}"], "splits={} is not"),
    ],
)
def test_item6_a_bad_dataset_setting_is_one_line_before_prepare_does_any_work(
    workdir, capsys, overrides, named
):
    formats.png_folder(workdir / "imgs", n_per_class=4, classes=2)
    write_params(workdir, compose())
    t0 = now_ms()
    args = [o.replace("{root}", str(workdir / "imgs")) for o in overrides]
    run_in_process("prepare", *args, capsys=capsys).named(named)
    assert statuses("prepare", t0) == []
    assert not Path("outputs").exists()


@pytest.mark.parametrize("where", ["command line", "params.yaml"])
def test_item6_a_gpu_trainer_without_cuda_is_one_line(workspace, capsys, monkeypatch, where):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a GPU machine
    if where == "params.yaml":  # what `dvc exp run -S trainer=gpu` composes
        write_params(workspace, compose("trainer=gpu"))
    overrides = ("trainer=gpu",) if where == "command line" else ()
    for stage in ("pretrain", "tune", "transfer"):
        t0 = now_ms()
        out = run_in_process(stage, *overrides, capsys=capsys)
        out.named("trainer.accelerator='gpu' is not allowed", "no CUDA device")
        assert statuses(stage, t0) == []
    assert not Path("outputs/tune").exists() and not Path("optuna-journal.log").exists()


def test_item6_a_nan_loss_names_the_key_the_rate_came_from(workspace, capsys):
    tune.run(compose("tune.enabled=false"))
    t0 = now_ms()
    out = run_in_process(
        "transfer",
        "tune.enabled=false",
        *DIVERGING_SCRATCH,
        *SMALL_TRANSFER,
        capsys=capsys,
    )
    out.named(
        "loss became NaN/inf",  # both rates named by the keys they came from: scratch's own
        "transfer.arms.scratch.head_lr=1000000.0, transfer.arms.scratch.backbone_lr=1000000.0",
    )
    # the stage and both arms' seed runs, which open together (ensembles) before any training
    assert sorted(statuses("transfer", t0)) == ["FAILED"] * 3
    assert not Path("outputs/transfer").exists()
    assert [p.name for p in Path("outputs").iterdir() if p.is_dir() and p.name[0] == "."] == []


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("data.labels_per_class=0", "data.labels_per_class=0 is not allowed"),
        ("data.labels_per_class=500", "data.labels_per_class=500 is not allowed; expected an"),
    ],
)
def test_item7_tune_checks_the_label_budget_before_any_trial(workspace, capsys, override, named):
    t0 = now_ms()
    run_in_process("tune", override, capsys=capsys).named(named)
    assert statuses("tune", t0) == []
    assert not Path("optuna-journal.log").exists(), "no study was created"
    assert not Path("outputs/tune").exists()


def test_item7_evaluate_checks_the_label_budget_before_its_run_starts(workspace, capsys):
    # evaluate refused it too, but from inside its MLflow run, which was left FAILED
    tune.run(compose("tune.enabled=false"))
    transfer.run(compose("tune.enabled=false", *SMALL_TRANSFER))
    t0 = now_ms()
    out = run_in_process(
        "evaluate",
        "tune.enabled=false",
        *SMALL_TRANSFER,
        "data.labels_per_class=500",
        capsys=capsys,
    )
    out.named("data.labels_per_class=500 is not allowed; expected an integer in [1, ")
    assert statuses("evaluate", t0) == []
    assert not Path("outputs/evaluate").exists()
