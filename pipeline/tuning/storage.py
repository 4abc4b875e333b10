"""Optuna storages: a journal file for one machine, an RDB (PostgreSQL) for many.

The journal file (``JournalFileBackend``) is safe for several processes on one machine; SQLite is
not (its locking breaks under parallel workers). For several machines use PostgreSQL through
``RDBStorage`` with heartbeats: a trial whose worker stops beating for ``grace_period`` seconds is
marked FAIL and re-queued once by ``RetryFailedTrialCallback``.

The journal file is locked with ``flock(2)`` (through ``filelock``) instead of Optuna's default
lock files (``JournalFileSymlinkLock``/``JournalFileOpenLock``, made for NFS): the kernel releases
an flock when its holder dies, while a lock file left by a SIGKILLed worker stalled the next start
for Optuna's 30 s grace period ("Forcibly releasing the lock file"). On NFS without flock support,
filelock falls back to a lock file of its own.
"""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path

from pipeline.errors import ConfigError, StorageError

_SCHEMA_RETRIES = 5
FLOCK_SUFFIX = ".flock"


class KernelJournalLock:
    """An Optuna journal-file lock held with ``flock(2)`` on ``<journal>.flock``: the kernel
    releases it when the process holding it dies, so a killed worker never leaves it stale.

    Optuna's journal backend only calls ``acquire()`` and ``release()`` (the interface of its
    lock classes, whose base class is not public).
    """

    def __init__(self, journal: Path) -> None:
        from filelock import FileLock

        self._lock = FileLock(str(journal) + FLOCK_SUFFIX, thread_local=False)

    def acquire(self) -> bool:
        """Block until this process holds the lock."""
        self._lock.acquire()
        return True

    def release(self) -> None:
        """Let the next process in."""
        self._lock.release()


def redact(url: str) -> str:
    """``url`` without its password, for logs and outputs."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def open_storage(
    url: str | None, journal: Path, *, heartbeat_interval: int = 10, grace_period: int = 60
) -> object:
    """The storage behind ``tune.storage``.

    Args:
        url: None for a journal file at ``journal``; else an SQLAlchemy URL
            (``postgresql://user:pw@host:port/db``).
        journal: Journal file path (parent folders are created).
        heartbeat_interval: RDB heartbeat in seconds.
        grace_period: Seconds without a heartbeat after which a running trial is stale.

    Raises:
        ConfigError: The URL cannot be parsed or the database cannot be reached.
        StorageError: The journal file cannot be read or written.
    """
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend

    if not url:
        try:
            journal.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(
                JournalFileBackend(str(journal), lock_obj=KernelJournalLock(journal))
            )
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise StorageError(journal, f"cannot use this Optuna journal ({err})") from err
    if "://" not in url:  # a path, say to a second journal: the journal is always ``journal``
        raise ConfigError(
            "tune.storage",
            url,
            f"null (the journal file {journal.name}) or a database URL "
            "(postgresql://user:pw@host:port/db): a journal file cannot be chosen",
        )
    if url.startswith("sqlite"):
        raise ConfigError(
            "tune.storage",
            url,
            "null (journal file) or a PostgreSQL/MySQL URL: "
            "SQLite is not safe for parallel workers",
        )
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(_SCHEMA_RETRIES):
        try:
            with warnings.catch_warnings():  # heartbeats: experimental since Optuna 2.8, still
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                    engine_kwargs={"pool_pre_ping": True, "connect_args": _connect_args(url)},
                )
        except (IntegrityError, ProgrammingError) as err:
            # Workers started together all create Optuna's schema on a fresh database and
            # PostgreSQL rejects all but one (duplicate type/table): wait, then use what exists.
            if attempt == _SCHEMA_RETRIES - 1:
                raise ConfigError(
                    "tune.storage", redact(url), f"a usable database ({_first_line(err)})"
                ) from err
            time.sleep(0.2 + random.random() * (attempt + 1))
        except Exception as err:  # SQLAlchemy's OperationalError/ArgumentError, driver errors
            allowed = f"null (journal file) or a reachable database URL ({_first_line(err)})"
            raise ConfigError("tune.storage", redact(url), allowed) from err
    raise AssertionError("unreachable")


def _first_line(err: BaseException) -> str:
    """The driver's own message of a SQLAlchemy error, first line only (psycopg adds hints on
    more lines, SQLAlchemy the SQL and a link), so the error stays one line."""
    cause = getattr(err, "orig", None) or err
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def _connect_args(url: str) -> dict:
    # fail fast on an unreachable server instead of waiting for the OS TCP timeout
    return {"connect_timeout": 5} if url.startswith("postgresql") else {}
