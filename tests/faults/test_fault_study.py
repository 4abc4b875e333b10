"""Issue 11, items 4, 8 and 9: the study's identity and environment failures, the journal lock
after a SIGKILL, and best.yaml with parallel workers."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from filelock import FileLock, Timeout

from pipeline.data.store import load_domain
from pipeline.transfer.source import SourceModel
from pipeline.tuning.report import best_trial_summary
from pipeline.tuning.storage import FLOCK_SUFFIX, open_storage
from pipeline.tuning.study import ENVIRONMENT_ATTR, WORKER_ATTR, counts, settle, worker_id
from stages import tune
from tests.conftest import compose
from tests.faults.conftest import now_ms, run_in_process, stage_env, statuses

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(*overrides: str) -> optuna.Study:
    cfg = compose(*overrides)
    source = SourceModel.load(Path("outputs/pretrain/model"))
    target = load_domain(Path("outputs/prepare/target"))
    return tune.make_study(cfg, tune.validate(cfg, 4), source.weights_id, target.card()["sha256"])


def test_item4_the_study_identity_holds_the_trainer_settings(workspace):
    name = _study().study_name
    assert _study("trainer.precision=bf16-mixed").study_name != name
    assert _study("trainer.threads=1").study_name != name
    assert _study("trainer.enable_progress_bar=true").study_name == name  # no effect on results
    assert _study("trainer.ensembles=false").study_name == name  # one by one: the same results
    assert _study("tune.n_trials=40").study_name == name  # a bigger budget extends the study


def test_item4_a_failing_machine_stops_the_study_without_counting_against_it(
    workspace, capsys, monkeypatch
):
    real = tune.train_arms
    calls = []

    def out_of_memory(*args, **kwargs):
        calls.append(1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(tune, "train_arms", out_of_memory)
    t0 = now_ms()
    for attempt in range(2):  # more machine failures than tune.max_failures allows
        out = run_in_process("tune", "tune.max_failures=1", capsys=capsys)
        out.named("a trial failed because of the machine", "out of memory", "re-queued")
        assert len(calls) == attempt + 1, "the stage stopped at the first machine failure"
    # the study's run (re-opened by the second attempt) and the two trials' runs
    assert statuses("tune", t0) == ["FAILED"] * 3
    assert not Path("outputs/tune").exists()
    study = _study("tune.max_failures=1")
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert [t.user_attrs.get(ENVIRONMENT_ATTR) for t in failed] == [True, True]

    monkeypatch.setattr(tune, "train_arms", real)  # the machine is fixed: the same study goes on
    assert run_in_process("tune", "tune.max_failures=1", capsys=capsys).code == 0
    study = _study("tune.max_failures=1")
    assert counts(study)["COMPLETE"] + counts(study)["PRUNED"] == 3
    retried = [t for t in study.trials if "retry_of" in t.user_attrs]
    assert {t.user_attrs["retry_of"] for t in retried} == {t.number for t in failed}
    best = yaml.safe_load(Path("outputs/tune/best.yaml").read_text())
    assert best["best_trial"] == study.best_trial.number


def test_item8_a_killed_worker_never_leaves_the_journal_lock_stale(tmp_path, caplog):
    journal = tmp_path / "optuna-journal.log"
    code = (
        "import sys, time; from pathlib import Path; "
        "from pipeline.tuning.storage import KernelJournalLock; "
        "lock = KernelJournalLock(Path(sys.argv[1])); lock.acquire(); print('held', flush=True); "
        "time.sleep(600)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(journal)],
        stdout=subprocess.PIPE,
        text=True,
        env=stage_env(),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        probe = FileLock(str(journal) + FLOCK_SUFFIX, timeout=0)
        with pytest.raises(Timeout):
            probe.acquire()  # held while its holder lives
    finally:
        holder.kill()
        holder.wait()
    probe.acquire()  # the kernel released it with the process: no grace period to wait out
    probe.release()
    # a lock file Optuna's default lock left after a SIGKILL is not consulted any more
    (tmp_path / "optuna-journal.log.lock").symlink_to(journal)
    caplog.set_level(logging.WARNING)
    storage = open_storage(None, journal)
    study = optuna.create_study(storage=storage, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(study.trials) == 2
    assert "Forcibly releasing" not in caplog.text
    assert (tmp_path / f"optuna-journal.log{FLOCK_SUFFIX}").exists(), "the journal used the flock"


def test_item9_best_is_the_studys_best_whichever_worker_finishes_first(tmp_path):
    storage = open_storage(None, tmp_path / "optuna-journal.log")
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0.4, 0.5), n_trials=1)  # this worker's trial
    other = study.ask()  # another live worker's trial, still running, that will be the best
    other.set_user_attr(WORKER_ATTR, worker_id())
    other.suggest_float("x", 0.4, 0.5)
    early = best_trial_summary(study)  # what a worker that finishes early used to report
    assert early["best_trial"] == 0

    def finish() -> None:
        time.sleep(0.5)
        study.tell(other, 0.9)

    threading.Thread(target=finish).start()
    settle(study, poll=0.05)  # waits for the other worker's trial
    best = best_trial_summary(study)
    assert (best["best_trial"], best["best_value"]) == (other.number, 0.9)
    assert counts(study)["RUNNING"] == 0


def test_item9_settle_reaps_a_dead_workers_trial_instead_of_waiting_forever(tmp_path):
    storage = open_storage(None, tmp_path / "optuna-journal.log")
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    trial = study.ask()
    trial.set_user_attr(WORKER_ATTR, f"{worker_id().split(':')[0]}:{int(dead.stdout)}")
    settle(study, poll=0.05)
    assert study.trials[0].state.name == "FAIL" and study.trials[0].user_attrs["reaped"]


def test_item9_a_trial_beyond_the_budget_started_by_a_racing_worker_does_not_run(tmp_path):
    from pipeline.tuning.study import SURPLUS_ATTR, _failures, _recorded

    storage = open_storage(None, tmp_path / "optuna-journal.log")
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    study.ask()  # the other worker took the budget's last trial after this one counted 2
    calls = []
    objective = _recorded(lambda t: calls.append(t) or 1.0, [], 3)
    study.optimize(objective, n_trials=1, catch=(Exception,))
    extra = study.trials[-1]
    assert calls == [] and extra.state.name == "FAIL" and extra.user_attrs[SURPLUS_ATTR]
    assert counts(study)["COMPLETE"] == 2 and _failures(study) == []
