"""A throwaway PostgreSQL server for tests: Debian's initdb/pg_ctl in a temp dir, free port.

Skips the test when no PostgreSQL server binaries are installed (`.ci/run` installs them).
Runs the server as the ``postgres`` user when the tests run as root (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server with trust auth on 127.0.0.1; yield its SQLAlchemy URL."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    # not under pytest's tmp_path: as root the server runs as `postgres`, which must reach it
    folder = Path(tempfile.mkdtemp(prefix="graftlab-pg-"))
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    prefix: list[str] = []
    user = os.environ.get("USER", "postgres")
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if not runuser:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        prefix, user = [runuser, "-u", "postgres", "--"], "postgres"
        folder.chmod(0o777)
    data, port = folder / "pgdata", _free_port()
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-A", "trust", "-U", user],
        check=True,
        capture_output=True,
    )
    opts = f"-h 127.0.0.1 -p {port} -k {folder}"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(folder / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)
