"""Which process owns something (a trial, an MLflow run, a temp folder), and whether it still runs.

What a killed process leaves behind (a RUNNING trial or MLflow run, a half-written temp folder) is
marked with its owner: host name, pid and the process's start time. The start time guards against
pid reuse: a new process that got the dead one's pid has another start time. Only owners on this
host can be checked; an owner on another host is reported as unknown (``None``) and left alone.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# Lightning's root folder of each fit: <tempdir>/.graftlab-fit-<owner>-<random> (owned_prefix)
FIT_ROOT = "graftlab-fit"


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists (also when another user owns it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc``), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])  # field 22 of the whole line
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Owner:
    """A process on some host.

    Attributes:
        host: Host name.
        pid: Process id on that host.
        started: Start time in clock ticks since boot, or None where unknown.
    """

    host: str
    pid: int
    started: int | None = None

    @property
    def token(self) -> str:
        """``host:pid:started`` (``host:pid`` when the start time is unknown)."""
        tail = "" if self.started is None else f":{self.started}"
        return f"{self.host}:{self.pid}{tail}"

    @classmethod
    def parse(cls, token: str) -> Owner | None:
        """An owner from :attr:`token` (or the older ``host:pid``); None if it is not one."""
        parts = token.rsplit(":", 2)
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            return cls(parts[0], int(parts[1]), int(parts[2]))
        host, _, pid = token.rpartition(":")
        return cls(host, int(pid)) if host and pid.isdigit() else None

    def alive(self) -> bool | None:
        """Whether the owner still runs; None when it lives on another host (cannot tell)."""
        if self.host != socket.gethostname():
            return None
        if not pid_alive(self.pid):
            return False
        return self.started is None or start_ticks(self.pid) in (None, self.started)


@cache
def _me(pid: int) -> Owner:
    return Owner(socket.gethostname(), pid, start_ticks(pid))


def current() -> Owner:
    """This process (computed once per pid, so a forked child gets its own)."""
    return _me(os.getpid())


def owned_prefix(name: str) -> str:
    """``.<name>-<owner>-``: the prefix of a temp folder this process makes for ``name``, which
    the next run can tell from one a killed process left (``stages._outputs.sweep_leftovers``
    removes those). ':' is awkward in file names and host names have no '+'."""
    return f".{name}-{current().token.replace(':', '+')}-"
