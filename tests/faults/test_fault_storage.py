"""Issue 11, items 3, 6 and 12: output folders and the MLflow store that cannot be written, a
previous output that cannot be removed, and a repository copied with its store."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from pipeline.tracking.store import checkpoint, use_store
from stages import tune
from tests.conftest import compose, write_params
from tests.faults.conftest import SMALL_TRANSFER, now_ms, run_in_process, statuses, temp_folders

NO_TUNE = ("tune.enabled=false", *SMALL_TRANSFER)


def _set(path: Path, locked: bool, mode: int) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i" if locked else "-i", str(path)], check=True)
    else:
        path.chmod((0o555 if path.is_dir() else 0o444) if locked else mode)


def _find(inode: int, root: Path) -> Path:
    """Where a file or folder is now (a stage may have moved it aside)."""
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            if (Path(folder) / name).stat().st_ino == inode:
                return Path(folder) / name
    raise FileNotFoundError(inode)


@contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """Make ``path`` (a file, or a folder's entries) impossible to change for this user: the
    immutable flag as root (root ignores permissions), read-only permissions otherwise."""
    if os.geteuid() == 0 and subprocess.run(["chattr", "-i", str(path)]).returncode:
        pytest.skip("this file system has no immutable flag (chattr), and we are root")
    stat = path.stat()
    _set(path, True, stat.st_mode)
    try:
        yield
    finally:
        _set(_find(stat.st_ino, Path.cwd()), False, stat.st_mode)


@pytest.fixture
def session_store():
    """Put MLflow back on the session's store after a test that pointed it elsewhere."""
    yield
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])


def test_item3_previous_outputs_that_cannot_be_removed_never_block_later_runs(
    workspace, capsys, caplog
):
    tune.run(compose("tune.enabled=false"))
    assert run_in_process("transfer", *NO_TUNE, capsys=capsys).code == 0
    first = json.loads(Path("outputs/transfer/models/index.json").read_text())["run_id"]
    caplog.set_level(logging.WARNING)
    # the previous outputs hold a file that cannot be deleted (a read-only tree)
    with unwritable(Path("outputs/transfer/models")):
        for _ in range(2):  # used to fail the second time: "[Errno 39] Directory not empty"
            t0 = now_ms()
            assert run_in_process("transfer", *NO_TUNE, capsys=capsys).code == 0
            assert statuses("transfer", t0) == ["FINISHED"] * 3
        left = [p for p in Path("outputs").iterdir() if p.name.endswith(".old")]
        assert len(left) == 1, "the old outputs moved aside, and stayed only because they must"
        assert f"could not remove {left[0]}" in caplog.text
    index = json.loads(Path("outputs/transfer/models/index.json").read_text())
    assert index["run_id"] != first
    assert [p for p in temp_folders(Path()) if not p.endswith(".old")] == []


def test_item3_a_failed_swap_restores_the_previous_outputs(workspace, capsys, monkeypatch):
    tune.run(compose("tune.enabled=false"))
    assert run_in_process("transfer", *NO_TUNE, capsys=capsys).code == 0
    before = Path("outputs/transfer/metrics.json").read_text()
    rename = Path.rename

    def failing(self: Path, target: Path) -> Path:
        if Path(target).name == "transfer" and not self.name.endswith(".old"):
            raise OSError(16, "Device or resource busy")  # the swap's second rename fails
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    t0 = now_ms()
    out = run_in_process("transfer", *NO_TUNE, capsys=capsys)
    out.named("outputs/transfer: cannot replace it with the new outputs", "busy")
    assert statuses("transfer", t0) == ["FAILED", "FINISHED", "FINISHED"]
    assert Path("outputs/transfer/metrics.json").read_text() == before
    assert temp_folders(Path()) == []


def test_item6_an_unwritable_outputs_folder_stops_the_stage_before_any_work(workspace, capsys):
    tune.run(compose("tune.enabled=false"))
    t0 = now_ms()
    with unwritable(Path("outputs")):
        out = run_in_process("transfer", *NO_TUNE, capsys=capsys)
    out.named("error in stage transfer: outputs: cannot write the stage output here")
    assert statuses("transfer", t0) == []
    assert not Path("outputs/transfer").exists() and temp_folders(Path()) == []
    # a stage folder under a file: the same, by another route
    Path("blocker").write_text("")
    out = run_in_process("transfer", *NO_TUNE, "paths.transfer=blocker/transfer", capsys=capsys)
    out.named("blocker: cannot write the stage output here")


@pytest.mark.parametrize("damage", ["read-only", "not a database"])
def test_item6_an_unusable_mlflow_store_is_one_line_naming_the_file(
    workspace, capsys, monkeypatch, session_store, damage
):
    tune.run(compose("tune.enabled=false"))
    db = workspace / "store" / "mlflow.db"
    db.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    if damage == "not a database":
        db.write_bytes(b"this is not SQLite" * 100)
        out = run_in_process("transfer", *NO_TUNE, capsys=capsys)
        out.named(f"sqlite:///{db}: cannot use this MLflow store", "not a database")
    else:
        experiment = use_store(f"sqlite:///{db}", "graftlab", db.parent / "mlartifacts")
        with unwritable(db):
            out = run_in_process("transfer", *NO_TUNE, capsys=capsys)
        out.named(f"{db}: the MLflow database is not a readable and writable file")
        assert MlflowClient(f"sqlite:///{db}").search_runs([experiment]) == []
    assert not Path("outputs/transfer").exists() and temp_folders(Path()) == []


def test_item12_a_copied_repository_writes_artifacts_into_itself(
    tmp_path, monkeypatch, capsys, session_store
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the repository's own store, mlflow.db at its root
    a, b = tmp_path / "original", tmp_path / "copy"
    a.mkdir()
    write_params(a, compose("data.source.n_train=100", "data.source.n_val=20"))
    monkeypatch.chdir(a)
    assert run_in_process("prepare", capsys=capsys).code == 0
    shutil.copytree(a, b)
    before = sorted(p.relative_to(a) for p in (a / "mlartifacts").rglob("*"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # mlflow.set_tracking_uri exported it
    monkeypatch.chdir(b)
    assert run_in_process("prepare", capsys=capsys).code == 0
    assert sorted(p.relative_to(a) for p in (a / "mlartifacts").rglob("*")) == before
    client = MlflowClient(f"sqlite:///{b / 'mlflow.db'}")
    exp = client.get_experiment_by_name("graftlab")
    assert exp.artifact_location == (b / "mlartifacts").as_uri()
    old, new = sorted(client.search_runs([exp.experiment_id]), key=lambda r: r.info.start_time)
    for run in (old, new):
        assert run.info.artifact_uri.startswith((b / "mlartifacts").as_uri())
    # the first run's artifacts are read from the copy: the original can go
    shutil.rmtree(a)
    cards = client.list_artifacts(old.info.run_id, "data_cards")
    assert {Path(f.path).name for f in cards} == {"source.json", "target.json"}
    path = client.download_artifacts(old.info.run_id, "data_cards/target.json", str(tmp_path))
    assert json.loads(Path(path).read_text())["name"] == "sklearn_digits"


def test_item2_the_sweep_removes_only_what_dead_processes_on_this_host_left(tmp_path):
    import socket
    import sys

    from pipeline.processes import Owner, current
    from stages._outputs import sweep_leftovers

    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True).stdout)  # fmt: skip
    host = socket.gethostname()
    names = {
        "live": current().token,
        "dead": Owner(host, dead_pid, 1).token,
        "other host": Owner("elsewhere", dead_pid, 1).token,
    }
    final = tmp_path / "outputs" / "transfer"
    final.mkdir(parents=True)
    made = {k: final.parent / f".transfer-{v.replace(':', '+')}-abc123" for k, v in names.items()}
    made["dead, old"] = made["dead"].with_name(made["dead"].name + ".old")
    made["legacy"] = final.parent / ".transfer-k2j4h5"  # from before folders carried an owner
    made["legacy old"] = final.parent / ".transfer.old"
    made["other stage"] = final.parent / ".tune-x"
    for folder in made.values():
        (folder / "models").mkdir(parents=True)
    removed = set(sweep_leftovers(final))
    assert removed == {made[k] for k in ("dead", "dead, old", "legacy", "legacy old")}
    assert all(made[k].is_dir() for k in ("live", "other host", "other stage"))
    assert final.is_dir()


def test_a_reader_of_the_store_never_blocks_a_stage_writing_to_it(tmp_path):
    # the MLflow UI listing runs, or a test polling for a RUNNING run, holds a read transaction;
    # in SQLite's default journal mode another process's write then failed after 20 s with
    # "database is locked"
    import sqlite3
    import sys

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    session = os.environ["MLFLOW_TRACKING_URI"]
    try:
        experiment = use_store(uri, "graftlab", tmp_path / "mlartifacts")
    finally:  # mlflow.set_tracking_uri exports the variable: the session store must stay
        os.environ["MLFLOW_TRACKING_URI"] = session
        mlflow.set_tracking_uri(session)
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM runs").fetchall() == [(0,)]
    writer = (
        f"import mlflow; mlflow.set_tracking_uri({uri!r})\n"
        f"with mlflow.start_run(experiment_id={experiment!r}): mlflow.log_metric('m', 1.0)"
    )
    done = subprocess.run([sys.executable, "-c", writer], capture_output=True, timeout=60)
    reader.execute("COMMIT")
    reader.close()
    assert done.returncode == 0, done.stderr.decode()[-500:]
    assert [r.data.metrics for r in MlflowClient(uri).search_runs([experiment])] == [{"m": 1.0}]

    # after the stage's checkpoint the database file alone holds the run (a copied repository)
    checkpoint(uri)
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(db, copy / "mlflow.db")
    runs = MlflowClient(f"sqlite:///{copy / 'mlflow.db'}").search_runs([experiment])
    assert [r.data.metrics for r in runs] == [{"m": 1.0}]


def test_options_after_the_database_path_are_not_part_of_its_file_name(tmp_path):
    import sqlite3

    from pipeline.tracking.store import sqlite_path, write_ahead_log

    db = tmp_path / "mlflow.db"
    assert sqlite_path(f"sqlite:///{db}?timeout=60") == db
    assert write_ahead_log(sqlite_path(f"sqlite:///{db}?timeout=60"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_file_that_is_not_a_database_is_left_for_mlflow_to_report(tmp_path):
    from pipeline.tracking.store import write_ahead_log

    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not SQLite" * 100)
    assert write_ahead_log(db) is False
    assert db.read_bytes() == b"this is not SQLite" * 100


def test_evaluate_against_a_store_without_the_transfer_run_is_one_line(
    workspace, capsys, monkeypatch, session_store
):
    # MLFLOW_TRACKING_URI changed between transfer and evaluate: MLflow's foreign-key
    # traceback (exit 1) from logging the scored models' metrics, after a FAILED run
    tune.run(compose("tune.enabled=false"))
    assert run_in_process("transfer", *NO_TUNE, capsys=capsys).code == 0
    run_id = json.loads(Path("outputs/transfer/models/index.json").read_text())["run_id"]
    db = workspace / "other" / "mlflow.db"
    db.parent.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    out = run_in_process("evaluate", *NO_TUNE, capsys=capsys)
    out.named(
        f"sqlite:///{db}: holds no run {run_id}, the transfer run "
        "outputs/transfer/models/index.json names"
    )
    assert (
        MlflowClient(f"sqlite:///{db}").search_runs(
            [e.experiment_id for e in MlflowClient(f"sqlite:///{db}").search_experiments()]
        )
        == []
    )
    assert not Path("outputs/evaluate").exists() and temp_folders(Path()) == []
