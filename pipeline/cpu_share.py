"""Share the CPU cores among the Graftlab processes training on one machine.

PyTorch's CPU kernels run on OpenMP threads that spin while they wait for work. Two processes
that each use every core (two ``dvc queue`` workers, or ``python -m stages.tune`` started twice)
do not just halve their speed: on a 2-core machine one transfer-stage fit took 53 s instead of
0.8 s, and 0.9 s with one thread per process (torch 2.14, measured for this module). torchrun
avoids it by setting ``OMP_NUM_THREADS=1`` for multi-process jobs; a Graftlab user starts workers
by hand or through DVC, so nobody knows their number in advance. Instead each stage process
registers itself in a per-user folder and, before every training run and epoch, takes
``cores // live processes`` threads. Hand-written because no library does this: it is a few
files and ``os.kill(pid, 0)``.

An explicit ``trainer.threads`` or ``OMP_NUM_THREADS`` turns it off (see ``stages._shell``).
"""

from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path

from pipeline.processes import pid_alive

_registered: Path | None = None


def folder() -> Path:
    """Where the live processes of this user leave one file per pid."""
    return Path(tempfile.gettempdir()) / f"graftlab-{os.getuid()}" / "workers"


def cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def register() -> None:
    """Count this process among the machine's training processes until it exits."""
    global _registered
    if _registered is not None:
        return
    folder().mkdir(parents=True, exist_ok=True)
    _registered = folder() / str(os.getpid())
    _registered.touch()
    atexit.register(unregister)


def unregister() -> None:
    """Stop counting this process (also done at exit)."""
    global _registered
    if _registered is not None:
        _registered.unlink(missing_ok=True)
        _registered = None


def live_processes() -> int:
    """Registered processes still running (files of dead ones are removed)."""
    n = 0
    for path in folder().iterdir() if folder().is_dir() else ():
        if not path.name.isdigit():
            continue
        if pid_alive(int(path.name)):
            n += 1
        else:
            path.unlink(missing_ok=True)
    return max(n, 1)


def rebalance() -> int | None:
    """Set torch's intra-op threads to this process's share of the cores.

    Returns:
        The thread count, or None when this process is not registered (nothing changed).
    """
    if _registered is None:
        return None
    import torch

    threads = max(1, cores() // live_processes())
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
