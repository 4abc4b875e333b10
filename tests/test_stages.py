"""The stages on the tiny config, in-process: outputs, MLflow lineage, determinism, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipeline.errors import CheckpointError, ConfigError, TrainingError
from stages import evaluate, prepare, pretrain, transfer, tune
from tests.conftest import compose, dvc_plots, write_params


def _read(path: str) -> dict:
    return json.loads(Path(path).read_text())


def _latest_run(client: MlflowClient, stage: str):
    exp = client.get_experiment_by_name("graftlab")
    runs = client.search_runs(
        [exp.experiment_id],
        f"tags.`graftlab.stage` = '{stage}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0]


def test_pipeline_outputs_and_lineage_from_evaluation_back_to_data(workspace):
    cfg = compose()
    tune.run(cfg)
    transfer.run(cfg)
    metrics = evaluate.run(cfg)
    for key in ("transfer.test_acc", "scratch.test_acc", "transfer_gain", "negative_transfer"):
        assert key in metrics
    files = {**_read("outputs/evaluate/metrics.json"), **_read("outputs/evaluate/details.json")}
    assert files == json.loads(json.dumps(metrics))
    report = Path("outputs/evaluate/report/report.md").read_text()
    for section in (
        "## Arms",
        "## Freeze-depth curve",
        "## Label efficiency",
        "## Transferability",
        "## Confusion matrix",
    ):
        assert section in report
    assert sorted(p.name for p in Path("outputs/evaluate/report").glob("*.png")) == [
        "arms.png",
        "confusion.png",
        "freeze_depth.png",
        "label_efficiency.png",
    ]

    # pretrain kept Lightning's best-epoch checkpoint; it loads without pickle and holds the
    # weights the stage published
    from pipeline.models.weights import load_state_dict

    ckpt = load_state_dict(Path("outputs/pretrain/model/best.ckpt"))
    weights = load_state_dict(Path("outputs/pretrain/model/weights.safetensors"))
    assert all(ckpt[f"model.{k}"].equal(v) for k, v in weights.items())

    # the tuned settings are what transfer used
    best = yaml.safe_load(Path("outputs/tune/best.yaml").read_text())
    index = _read("outputs/transfer/models/index.json")
    freeze_k = [r for r in index["runs"] if r["arm"] == "freeze_k"]
    assert {r["freeze_groups"] for r in freeze_k} == {best["overrides"]["transfer.freeze_groups"]}
    assert index["tune_run_id"] == best["tune_run_id"]

    # walk the lineage with MLflow alone: evaluation -> transfer model -> source model -> data
    client = MlflowClient()
    ev = client.get_run(_read("outputs/evaluate/report/mlflow.json")["run_id"])
    scored = {m.model_id for m in ev.inputs.model_inputs}
    assert scored == {r["model_id"] for r in index["runs"]}
    model = client.get_logged_model(freeze_k[0]["model_id"])
    arm_run = client.get_run(model.source_run_id)
    assert arm_run.data.tags["graftlab.tune_run_id"] == best["tune_run_id"]
    source_id = model.tags["graftlab.source_model_id"]
    assert source_id in {m.model_id for m in arm_run.inputs.model_inputs}
    source = client.get_logged_model(source_id)
    pre = client.get_run(source.source_run_id)
    assert pre.data.tags["graftlab.stage"] == "pretrain"
    digests = {d.dataset.name: d for d in pre.inputs.dataset_inputs}
    card = _read("outputs/prepare/source/card.json")
    train = digests["synthetic_digits/train"]
    assert train.dataset.digest == card["splits"]["train"]["sha256"][:32]
    assert {t.key: t.value for t in train.tags}["sha256"] == card["splits"]["train"]["sha256"]
    assert "config.yaml" in [a.path for a in client.list_artifacts(pre.info.run_id)]
    # the prepare run, which builds on no run, says what it made (its description was empty)
    made = client.get_run(_read("outputs/prepare/mlflow.json")["run_id"])
    target = _read("outputs/prepare/target/card.json")
    sizes = [f"{split} {info['size']}" for split, info in card["splits"].items()]
    assert made.data.tags["mlflow.note.content"].startswith(
        f"Prepared the source {card['name']} ({', '.join(sizes)}; 10 classes) and the target "
        f"{target['name']} ("
    )
    assert pre.data.params["model._target_"] == "pipeline.models.small_cnn.small_cnn"
    # per-epoch metrics from Lightning landed in the same runs
    for key in ("val/acc", "val/loss", "train/loss", "train/acc"):
        steps = [m.step for m in client.get_metric_history(pre.info.run_id, key)]
        assert len(steps) == cfg.pretrain.epochs and steps == sorted(set(steps)), key
    assert client.get_metric_history(arm_run.info.run_id, "val/acc")

    # the study: the tune run is the parent of one nested run per trial, each trial holding its
    # params, per-epoch metrics, result and Optuna state; the best trial is the one best.yaml names
    trials = client.search_runs(
        [pre.info.experiment_id], f"tags.`mlflow.parentRunId` = '{best['tune_run_id']}'"
    )
    assert len(trials) == cfg.tune.n_trials
    assert {r.data.tags["optuna.trial"] for r in trials} == {"0", "1", "2"}
    for r in trials:
        state = r.data.tags["optuna.state"]
        assert (state, r.info.status) in {("COMPLETE", "FINISHED"), ("PRUNED", "FINISHED")}
        assert r.data.params["transfer.freeze_groups"] in {"0", "1", "2", "3", "4"}
        assert client.get_metric_history(r.info.run_id, "train/loss")
        if state == "COMPLETE":  # every trial trains two paired label subsets and averages them
            per_seed = [r.data.metrics[f"best/val_acc.seed{s}"] for s in (0, 1)]
            assert r.data.metrics["best/val_acc"] == pytest.approx(sum(per_seed) / 2)
    top = client.get_run(best["best_trial_run_id"])
    assert top.data.tags["optuna.trial"] == str(best["best_trial"])
    assert top.data.metrics["best/val_acc"] == pytest.approx(best["best_value"])
    tuned = {k: float(v) for k, v in best["overrides"].items()}
    assert {k: float(top.data.params[k]) for k in tuned} == pytest.approx(tuned)
    assert len(client.get_metric_history(top.info.run_id, "val/acc")) == cfg.tune.epochs


def test_same_seed_gives_same_metrics(workspace):
    cfg = compose("tune.enabled=false", "transfer.run=[scratch,freeze_k]")
    tune.run(cfg)
    first = transfer.run(cfg)
    second = transfer.run(cfg)
    assert first == second


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("transfer.freeze_groups=7", r"transfer\.freeze_groups=7.*\[0, 4\]"),
        ("data.labels_per_class=500", r"data\.labels_per_class=500.*\[1, \d+\]"),
        ("data.labels_per_class=0", r"data\.labels_per_class=0"),
        ("transfer.run=[scratch,nope]", r"transfer\.run='nope'"),
        (
            "transfer.arms.l2sp.objectives.l2sp.alpha=-1",
            r"transfer\.arms\.l2sp\.objectives\.l2sp=.*>= 0",
        ),
    ],
)
def test_bad_transfer_config_fails_before_training_and_writes_nothing(workspace, override, match):
    cfg = compose("tune.enabled=false", override)
    tune.run(compose("tune.enabled=false"))
    with pytest.raises(ConfigError, match=match):
        transfer.run(cfg)
    assert not Path("outputs/transfer").exists()


def test_missing_or_corrupt_source_checkpoint_is_named(workspace):
    cfg = compose("tune.enabled=false")
    tune.run(cfg)
    weights = Path("outputs/pretrain/model/weights.safetensors")
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="weights.safetensors: corrupt"):
        transfer.run(cfg)
    weights.unlink()
    with pytest.raises(CheckpointError, match="weights.safetensors: file not found"):
        transfer.run(cfg)
    assert not Path("outputs/transfer").exists()


def test_checkpoint_from_another_model_config_is_rejected(workspace):
    cfg = compose("tune.enabled=false", "model.width=8")
    tune.run(compose("tune.enabled=false"))
    with pytest.raises(
        CheckpointError, match=r"weights\.safetensors: groups\.0\.0\.weight has shape"
    ):
        transfer.run(cfg)


def test_nan_loss_marks_the_mlflow_run_failed_and_keeps_old_outputs(workspace):
    before = Path("outputs/pretrain/model/weights.safetensors").read_bytes()
    with pytest.raises(TrainingError, match=r"NaN/inf.*pretrain\.lr=1000000\.0"):
        pretrain.run(compose("pretrain.lr=1e6"))  # a rate that makes the loss overflow
    assert _latest_run(MlflowClient(), "pretrain").info.status == "FAILED"
    # the failed run wrote nothing: the previous outputs are untouched, no temp folders remain
    assert Path("outputs/pretrain/model/weights.safetensors").read_bytes() == before
    assert sorted(p.name for p in Path("outputs").iterdir()) == ["decoded", "prepare", "pretrain"]


def test_stage_exits_non_zero_with_a_one_line_error(workspace):
    write_params(workspace, compose("tune.enabled=false"))
    tune.run(compose("tune.enabled=false"))
    proc = subprocess.run(
        [sys.executable, "-m", "stages.transfer", "transfer.freeze_groups=9"],
        capture_output=True,
        text=True,
        cwd=workspace,
    )
    assert proc.returncode == 2
    assert "transfer.freeze_groups=9 is not allowed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (workspace / "outputs" / "transfer").exists()


def test_bad_source_is_never_reported_as_helping(workdir):
    cfg = compose(
        "data/source=shuffled_digits",
        "tune.enabled=false",
        "transfer.run=[scratch,freeze_k]",
        "transfer.seeds=3",
        "evaluate.curves.freeze_depth.enabled=false",
        "evaluate.curves.label_efficiency.labels_per_class=[]",
        "evaluate.scores.enabled=false",
    )
    for stage in (prepare, pretrain, tune, transfer):
        stage.run(cfg)
    metrics = evaluate.run(cfg)
    assert metrics["negative_transfer"] or metrics["inconclusive"], metrics


def test_models_and_artifacts_land_in_the_repository_store_not_in_cwd(workspace):
    tune.run(compose("tune.enabled=false"))
    transfer.run(
        compose("tune.enabled=false", "transfer.run=[scratch,freeze_k]", "transfer.seeds=1")
    )
    assert not Path("mlruns").exists()
    index = _read("outputs/transfer/models/index.json")
    client = MlflowClient()
    for row in index["runs"]:
        model = client.get_logged_model(row["model_id"])
        assert model.experiment_id == index["experiment_id"]
        assert model.source_run_id == row["run_id"]
        run = client.get_run(row["run_id"])
        assert run.data.tags["graftlab.stage"] == "transfer"  # children carry the stage tags


@pytest.mark.parametrize(
    ("key", "value"),
    [("threads", "0"), ("threads", "-2"), ("threads", "many"), ("ensembles", "maybe")],
)
def test_bad_trainer_value_of_ours_is_named_before_anything_runs(workspace, key, value, capsys):
    from stages._shell import run_stage

    ran = []
    with pytest.raises(SystemExit) as exit_info:
        run_stage("transfer", ran.append, [f"trainer.{key}={value}"])
    assert exit_info.value.code == 2 and ran == []
    err = capsys.readouterr().err
    assert f"trainer.{key}=" in err and "is not allowed" in err and value in err


def test_an_arm_that_is_the_same_model_as_another_is_trained_once(workspace, caplog):
    cfg = compose(
        "tune.enabled=false",
        "transfer.freeze_groups=0",
        "transfer.run=[scratch,freeze_k,finetune]",
        "transfer.seeds=2",
        "evaluate.curves.freeze_depth.enabled=false",
        "evaluate.curves.label_efficiency.labels_per_class=[]",
        "evaluate.scores.enabled=false",
    )
    tune.run(cfg)
    transfer.run(cfg)
    index = _read("outputs/transfer/models/index.json")
    rows = {r["arm"]: r for r in index["runs"]}
    assert rows["finetune"]["same_as"] == "freeze_k"
    said = [r for r in caplog.records if "trains the same model as" in r.getMessage()]
    assert len(said) == 1, "said once, not once per seed"
    assert rows["finetune"]["model_id"] == rows["freeze_k"]["model_id"]
    children = MlflowClient().search_runs(
        [index["experiment_id"]], f"tags.`mlflow.parentRunId` = '{index['run_id']}'"
    )
    names = sorted(r.info.run_name for r in children)
    assert names == ["freeze_k-seed0", "freeze_k-seed1", "scratch-seed0", "scratch-seed1"]
    evaluate.run(cfg)
    report = Path("outputs/evaluate/report/report.md").read_text()
    assert "freeze_k is the same model as finetune (trained once)" in report


def test_large_validation_is_an_option_reported_apart_from_the_budget(workspace):
    cfg = compose(
        "tune.enabled=false",
        "transfer.run=[scratch,freeze_k]",
        "evaluate.large_validation=true",
        "evaluate.curves.freeze_depth.enabled=false",
        "evaluate.curves.label_efficiency.labels_per_class=[]",
        "evaluate.scores.enabled=false",
    )
    tune.run(cfg)
    transfer.run(cfg)
    evaluate.run(cfg)
    summary = _read("outputs/evaluate/report/summary.json")
    assert set(summary["large_validation"]) == {"freeze_k", "scratch"}
    assert len(summary["large_validation"]["freeze_k"]["values"]) == cfg.transfer.seeds
    report = Path("outputs/evaluate/report/report.md").read_text()
    assert "## With a large validation set" in report
    # both curves off: their tables are still written (a missing one failed `dvc plots show`),
    # one point and no values, so their plots are drawn empty
    for title, _, path, column in dvc_plots(cfg):
        assert path.exists(), f"{title}: dvc.yaml reads {path}, which evaluate did not write"
        header = path.read_text().splitlines()[0].split(",")
        assert column in header or set(column) <= set(header), (title, column)
    depth = Path("outputs/evaluate/plots/freeze_depth.csv").read_text().splitlines()
    assert depth == ["k,freeze,anb,anb_plus", "0,,,"]
    assert "1 train + 3 val labels per class" in report.split("\n")[2]  # the verdict's budget


def test_tuning_off_leaves_outputs_dvc_does_not_call_empty_and_says_so(workspace, capsys):
    tune.run(compose("tune.enabled=false"))
    assert capsys.readouterr().out.startswith("tune: off (tune.enabled=false)")
    out = Path("outputs/tune")
    assert yaml.safe_load((out / "best.yaml").read_text()) == {"enabled": False, "overrides": {}}
    assert (out / "trials.csv").read_text().splitlines() == ["number,value,state"]
    assert [p.name for p in (out / "plots").iterdir()] == ["README.md"]
