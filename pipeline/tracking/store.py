"""Where runs are recorded: one MLflow store per repository, shared by every stage and worker.

Default: a SQLite database and an artifact folder at the repository root. ``MLFLOW_TRACKING_URI``
overrides it (e.g. an MLflow server backed by PostgreSQL for many machines).

MLflow stores an experiment's artifact location as an absolute path, and a run's and a model's
too. A repository copied or moved with its ``mlflow.db`` would keep writing artifacts into the
original one (or re-create its folder): so when the repository's own store points at another
root's ``mlartifacts``, every stored location under it is re-pointed at this root first.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from pipeline.errors import StorageError

log = logging.getLogger(__name__)

DB_NAME, ARTIFACTS_NAME = "mlflow.db", "mlartifacts"


def repo_root(default: Path) -> Path:
    """The repository root: ``DVC_ROOT`` when DVC runs us (queue workers run in temp copies, but
    DVC points this at the real repository), else ``default``."""
    return Path(os.environ.get("DVC_ROOT") or default).resolve()


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<root>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / DB_NAME}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (without its ``?`` options), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    return Path(database) if database and database != ":memory:" else None


def check_writable(uri: str) -> None:
    """For a SQLite store: the database and its folder (SQLite writes its log beside it) can
    be written; checked before a stage does any work, so a read-only ``mlflow.db`` is one line.

    Raises:
        StorageError: Naming the database file.
    """
    db = sqlite_path(uri)
    if db is None:
        return
    if db.exists() and not (db.is_file() and os.access(db, os.R_OK | os.W_OK)):
        raise StorageError(db, "the MLflow database is not a readable and writable file")
    if not os.access(db.parent if str(db.parent) else ".", os.W_OK | os.X_OK):
        raise StorageError(db, "cannot write in this folder (SQLite keeps its log there)")


def write_ahead_log(db: Path) -> bool:
    """Put the SQLite database ``db`` in write-ahead-log mode (persistent: once per file), so
    readers never block writers (SQLite, "Write-Ahead Logging", https://sqlite.org/wal.html).

    The store is shared by every stage, tune worker and the MLflow UI of a repository. In
    SQLite's default rollback-journal mode one open read transaction (the UI listing runs, a
    test polling for a RUNNING run) made another process's MLflow write wait out MLflow's 20 s
    busy timeout and fail with ``database is locked``; in WAL mode the same write took 1.1 s
    (measured with MLflow 3.17). A file that cannot take it (not a database, a file system
    without shared memory) is left as it is: MLflow's own access then reports what is wrong.

    Returns:
        Whether the database is in WAL mode.
    """
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(db, timeout=20)) as con:
            if con.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return True
            return con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    except sqlite3.Error as err:
        log.debug("%s stays in its journal mode: %s", db, err)
        return False


def checkpoint(uri: str) -> None:
    """Fold a SQLite store's write-ahead log back into the database file (best effort), so
    that after a stage ends ``mlflow.db`` alone holds every run: a repository copied with its
    database but not ``mlflow.db-wal`` loses nothing. Skipped while another process reads it."""
    import sqlite3

    db = sqlite_path(uri)
    if db is None or not db.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=rw", uri=True, timeout=1)) as c:
            c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.Error as err:
        log.debug("%s: no checkpoint (%s)", db, err)


def use_store(uri: str, experiment: str, artifact_root: Path | None) -> str:
    """Point MLflow at ``uri`` and select (creating if needed) ``experiment``; return its id.

    A new experiment keeps artifacts under ``artifact_root/<experiment id>`` when given (needed
    for local stores, so runs from any working directory land in the same folder).
    """
    import mlflow

    check_writable(uri)
    if (db := sqlite_path(uri)) is not None:
        write_ahead_log(db)
    mlflow.set_tracking_uri(uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        location = artifact_root.as_uri() if artifact_root and not uri.startswith("http") else None
        # another worker may create it between our lookup and create
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            mlflow.create_experiment(experiment, artifact_location=location)
        found = mlflow.get_experiment_by_name(experiment)
    if artifact_root is not None and uri == f"sqlite:///{artifact_root.parent / DB_NAME}":
        relocate_artifacts(uri, found.artifact_location, found.experiment_id, artifact_root)
    mlflow.set_experiment(experiment_id=found.experiment_id)  # fluent calls default to it
    return found.experiment_id


def relocate_artifacts(uri: str, location: str, experiment_id: str, artifact_root: Path) -> bool:
    """Re-point the stored artifact locations of a moved or copied repository's store.

    If the experiment's location is ``<old root>/mlartifacts`` for another root, every
    experiment, run and LoggedModel location under it is rewritten to ``artifact_root`` (the
    copied artifacts are there). MLflow has no API to change a stored location, so this updates
    its tables through its own SQLAlchemy models.

    Returns:
        Whether anything was re-pointed.
    """
    new = artifact_root.as_uri()
    if location == new or not location.startswith("file://"):
        return False
    if not location.endswith(f"/{artifact_root.name}"):
        return False  # not a location this code chose: leave it
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlLoggedModel, SqlRun
    from mlflow.tracking._tracking_service.utils import _get_store  # the store of this URI
    from sqlalchemy import func, or_

    store = _get_store(uri)
    with store.ManagedSessionMaker() as session:
        for table, column in (
            (SqlExperiment, SqlExperiment.artifact_location),
            (SqlRun, SqlRun.artifact_uri),
            (SqlLoggedModel, SqlLoggedModel.artifact_location),
        ):
            under = or_(column == location, column.startswith(location + "/", autoescape=True))
            session.query(table).filter(under).update(
                {column: func.replace(column, location, new)}, synchronize_session=False
            )
    log.warning("the MLflow store pointed at %s; artifacts now go to %s", location, new)
    return True
