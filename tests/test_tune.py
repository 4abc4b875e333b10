"""The tune stage: validation, failures, pruning, resume after SIGKILL, parallel workers."""

import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import torch
import yaml

from pipeline.errors import ConfigError, TrainingError
from pipeline.transfer.prefix_cache import PrefixCache
from pipeline.transfer.source import SourceModel
from pipeline.transfer.train import TargetTask, train_arm
from pipeline.tuning.space import parse_space
from pipeline.tuning.study import counts, run_trials
from stages import tune
from tests.conftest import compose, write_params
from tests.postgres import postgres_server

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("tune.n_trials=0", r"tune\.n_trials=0.*>= 1"),
        (
            "+tune.space.transfer.no_such_key={type:float,low:0.1,high:1.0}",
            r"tune\.space\.transfer\.no_such_key.*existing config key",
        ),
        ("tune.space.transfer.head_lr.low=0.9", r"tune\.space\.transfer\.head_lr.*empty"),
        ("tune.space.transfer.head_lr.type=gaussian", r"tune\.space\.transfer\.head_lr\.type"),
        ("tune.storage=postgresql://nobody@127.0.0.1:1/none", r"tune\.storage.*reachable"),
        ("tune.storage=sqlite:///study.db", r"tune\.storage.*SQLite is not safe"),
        # a path: was "a reachable database (Could not parse SQLAlchemy URL ...)"
        (
            "tune.storage=/tmp/x/other-journal.log",
            r"tune\.storage='/tmp/x/other-journal\.log' .*expected null \(the journal file "
            r"optuna-journal\.log\) or a database URL .*a journal file cannot be chosen$",
        ),
    ],
)
def test_bad_tune_config_fails_before_any_trial(workspace, override, match):
    with pytest.raises(ConfigError, match=match):
        tune.run(compose(override))
    assert not Path("outputs/tune").exists()
    assert not Path("optuna-journal.log").exists() or "storage" not in override


def test_an_unreachable_study_database_is_one_line_and_exit_2(workspace):
    write_params(workspace, compose())
    url = "postgresql://nobody:pw@127.0.0.1:1/none"
    done = subprocess.run(
        _tune_cmd(f"tune.storage={url}"), cwd=workspace, capture_output=True, text=True
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "tune.storage='postgresql://nobody:***@127.0.0.1:1/none'" in lines[0]
    assert "Connection refused" in lines[0], lines


def test_space_bound_groups_is_the_backbone_group_count():
    space = {"transfer": {"freeze_groups": {"type": "int", "low": 0, "high": "groups"}}}
    (p,) = parse_space(space, groups=5)
    assert (p.key, p.low, p.high) == ("transfer.freeze_groups", 0, 5)


def test_failing_and_nan_trials_are_recorded_and_the_study_goes_on():
    study = optuna.create_study(direction="maximize")

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 1:
            raise RuntimeError("planted failure")
        return math.nan if trial.number == 2 else x

    run_trials(study, objective, n_trials=4, max_failures=3)
    c = counts(study)
    assert (c["COMPLETE"], c["FAIL"]) == (4, 2)
    assert study.trials[1].user_attrs["error"] == "RuntimeError: planted failure"


def test_too_many_failures_stop_the_study_with_the_last_error():
    study = optuna.create_study()

    def boom(trial):
        raise ValueError("boom")

    with pytest.raises(TrainingError, match=r"2 trials failed.*max_failures=2.*ValueError: boom"):
        run_trials(study, boom, n_trials=5, max_failures=2)
    assert counts(study)["FAIL"] == 2


def test_a_planted_hopeless_trial_is_pruned(workspace):
    from optuna.distributions import FloatDistribution
    from optuna_integration import PyTorchLightningPruningCallback

    from pipeline.data.store import load_domain
    from stages import _build as build

    cfg = compose("transfer.epochs=4")
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1)
    )
    study.add_trial(
        optuna.trial.create_trial(
            value=0.9,
            params={"x": 0.5},
            distributions={"x": FloatDistribution(0, 1)},
            intermediate_values={0: 0.8, 1: 0.85, 2: 0.9, 3: 0.9},
        )
    )
    trial = study.ask()
    arm = build.arm(cfg, "scratch", 4, seed=0)
    import dataclasses

    hopeless = dataclasses.replace(
        arm, settings=dataclasses.replace(arm.settings, head_lr=1e-9, backbone_lr=1e-9)
    )
    target = load_domain(Path("outputs/prepare/target"))
    source = SourceModel.load(Path("outputs/pretrain/model"))
    with pytest.raises(optuna.TrialPruned, match="epoch 0"):
        train_arm(
            hopeless,
            TargetTask(target, 1),
            build.model_factory(cfg),
            source,
            trainer_kwargs={"enable_progress_bar": False},
            cache=PrefixCache(),
            callbacks=(PyTorchLightningPruningCallback(trial, monitor="val/acc"),),
        )
    assert torch.is_grad_enabled()


SLOW = [
    "tune.n_trials=6",
    "tune.epochs=8",
    "tune/pruner=none",
]


def _tune_cmd(*overrides):
    return [sys.executable, "-m", "stages.tune", *overrides]


def _study(workspace, storage=None, overrides=()):
    cfg = compose(*SLOW, *overrides, *(["tune.storage=" + storage] if storage else []))
    source = SourceModel.load(workspace / "outputs/pretrain/model")
    from pipeline.data.store import load_domain

    target = load_domain(workspace / "outputs/prepare/target")
    params = tune.validate(cfg, 4)
    return tune.make_study(cfg, params, source.weights_id, target.card()["sha256"])


def test_killed_worker_resumes_with_completed_trials_kept(workspace):
    # long enough trials that the kill lands mid-study (6 short trials can finish in ~2 s)
    longer = ("tune.epochs=40",)
    write_params(workspace, compose(*SLOW, *longer))
    proc = subprocess.Popen(
        _tune_cmd(), cwd=workspace, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    journal = workspace / "optuna-journal.log"
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.2)
        if journal.exists() and counts(_study(workspace, overrides=longer))["COMPLETE"] >= 2:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {
        t.number: t.value
        for t in _study(workspace, overrides=longer).trials
        if t.state == optuna.trial.TrialState.COMPLETE
    }
    assert 2 <= len(before) < 6
    assert not Path(workspace / "outputs/tune").exists()

    done = subprocess.run(_tune_cmd(), cwd=workspace, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    study = _study(workspace, overrides=longer)
    c = counts(study)
    assert c["COMPLETE"] + c["PRUNED"] == 6 and c["RUNNING"] == 0
    after = {t.number: t.value for t in study.trials}
    assert all(after[n] == v for n, v in before.items())  # completed trials kept as they were
    reaped = [t for t in study.trials if t.user_attrs.get("reaped")]
    assert len(reaped) <= 1
    assert (workspace / "outputs/tune/best.yaml").exists()


def _parallel(workspace, storage=None):
    extra = [f"tune.storage={storage}"] if storage else []
    write_params(workspace, compose(*SLOW, *extra))
    procs = [
        subprocess.Popen(
            _tune_cmd(), cwd=workspace, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(e[-1500:] for e in errors)
    study = _study(workspace, storage)
    c = counts(study)
    numbers = [t.number for t in study.trials]
    assert c["COMPLETE"] + c["PRUNED"] == 6 and c["RUNNING"] == 0
    assert len(numbers) == len(set(numbers))
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2, "both workers ran trials of the one study"
    # whichever worker wrote it last, best.yaml holds the whole study's best (issue 11, item 9)
    best = yaml.safe_load((workspace / "outputs/tune/best.yaml").read_text())
    assert (best["best_trial"], best["best_value"]) == (study.best_trial.number, study.best_value)


def test_two_workers_share_one_study_on_a_journal_file(workspace):
    _parallel(workspace)


@pytest.mark.postgres
def test_two_workers_share_one_study_on_postgresql(workspace):
    with postgres_server() as url:
        _parallel(workspace, url)


def test_more_trials_extend_the_study_and_reopen_its_run(workspace, capsys):
    # the README's "tune.n_trials=40 extends the same study": the parent MLflow run the first
    # run finished is re-opened, and n_trials, which may differ per run, is a tag, not a param
    from mlflow import MlflowClient

    from tests.faults.conftest import run_in_process

    write_params(workspace, compose(*SLOW, "tune.epochs=3", "tune.n_trials=2"))
    first = run_in_process("tune", capsys=capsys)
    assert first.code == 0, first.err
    run_id = yaml.safe_load((workspace / "outputs/tune/best.yaml").read_text())["tune_run_id"]
    more = run_in_process("tune", "tune.n_trials=3", "tune.timeout=600", capsys=capsys)
    assert more.code == 0, more.err
    best = yaml.safe_load((workspace / "outputs/tune/best.yaml").read_text())
    assert best["tune_run_id"] == run_id
    c = counts(_study(workspace, overrides=("tune.epochs=3",)))  # SLOW's study, at 3 epochs
    assert c["COMPLETE"] == 3 and c["RUNNING"] == 0
    run = MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert (run.data.tags["tune.n_trials"], run.data.tags["tune.timeout"]) == ("3", "600")
    assert "tune.n_trials" not in run.data.params and run.data.params["tune.epochs"] == "3"
    # the study run and its trials say what they are and link what they build on (both were
    # empty): the whole study at the last worker's end, each trial's settings
    source_model = run.data.tags["graftlab.source_model_id"]
    note = run.data.tags["mlflow.note.content"]
    assert note.startswith(f"Optuna study {best['study']}: 3 trials (3 complete, 0 pruned")
    assert f"best trial {best['best_trial']}, val_acc {best['best_value']:.4g}" in note
    assert source_model in note and best["best_trial_run_id"] in note
    trials = MlflowClient().search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert len(trials) == 3
    for trial in trials:
        text = trial.data.tags["mlflow.note.content"]
        number = trial.data.tags["optuna.trial"]
        assert text.startswith(f"Trial {number} of Optuna study {best['study']}: transfer.")
        assert run_id in text and source_model in text


@pytest.mark.postgres
def test_the_study_run_never_records_a_storage_password(workspace):
    from mlflow import MlflowClient

    with postgres_server() as url:  # trust auth: the password is accepted and ignored
        secret = url.replace("@", ":s3cret@", 1)
        write_params(workspace, compose(*SLOW, "tune.n_trials=1", f"tune.storage={secret}"))
        done = subprocess.run(_tune_cmd(), cwd=workspace, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    run_id = yaml.safe_load((workspace / "outputs/tune/best.yaml").read_text())["tune_run_id"]
    run = MlflowClient().get_run(run_id)
    assert run.data.tags["tune.storage"] == secret.replace("s3cret", "***")
    assert "s3cret" not in str(run.data.params) + str(run.data.tags)


def test_a_worker_waiting_for_another_prints_no_optuna_warning(monkeypatch):
    # settle() reaped stale trials through an experimental Optuna function whose
    # ExperimentalWarning reached the console of the worker that waited
    from pipeline.tuning import study as study_module

    study = optuna.create_study(direction="maximize")
    running = study.ask()
    monkeypatch.setattr(study_module.time, "sleep", lambda _: study.tell(running, 1.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        study_module.settle(study)
    assert counts(study)["RUNNING"] == 0
    assert [w.message for w in caught if w.category is optuna.exceptions.ExperimentalWarning] == []
