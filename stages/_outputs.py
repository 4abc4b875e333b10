"""A stage's output folder, written atomically, and the leftovers of stages that died writing it.

A stage writes into a temp folder beside its output folder, ``.<name>-<owner>-<random>``, and
swaps it into place in two renames when it succeeds. The owner part (host, pid, start time, see
:mod:`pipeline.processes`) lets the next run of any stage tell the temp folder of a live process
(a parallel tune worker) from one that a killed process left behind, and remove only the latter.
The previous outputs move to ``<temp>.old`` for the swap, a name no other run uses, so an old
folder that cannot be removed (read-only contents) never blocks a later run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import StorageError
from pipeline.processes import Owner, owned_prefix

log = logging.getLogger(__name__)
OLD = ".old"


def owner_of(folder: Path, final: Path) -> Owner | None:
    """The process that made temp folder ``folder`` for ``final``; None for a name without one
    (written before folders carried their owner)."""
    name = folder.name.removesuffix(OLD).removeprefix(f".{final.name}-")
    owner, _, _random = name.rpartition("-")
    return Owner.parse(owner.replace("+", ":")) if owner else None


def _remove(path: Path) -> bool:
    """Remove ``path`` as far as possible; warn, naming it, where that is not possible."""
    shutil.rmtree(path, ignore_errors=True)
    if not path.exists():
        return True
    try:
        shutil.rmtree(path)  # again, only to learn why
    except OSError as err:
        log.warning("could not remove %s (%s); remove it by hand", path, err)
        return False
    return True


def sweep_leftovers(final: Path, what: str = "") -> list[Path]:
    """Remove the temp and old folders of ``final`` that no live process on this host owns.

    Folders of live processes and of processes on other hosts stay; so does anything that cannot
    be removed (it is named in a warning, and blocks nothing: every run uses new names). The
    warning says where they were: ``what``, else beside ``final``.
    """
    if not final.parent.is_dir():
        return []
    candidates = [*final.parent.glob(f".{final.name}-*"), final.parent / f".{final.name}{OLD}"]
    removed = []
    for folder in candidates:
        if not folder.is_dir() or folder.is_symlink():
            continue
        owner = owner_of(folder, final)
        if owner is not None and owner.alive() is not False:
            continue
        if _remove(folder):
            removed.append(folder)
    if removed:
        where = what or f"beside {final}"
        log.warning("removed %d folder(s) left by dead runs %s", len(removed), where)
    return removed


def check_writable(final: Path) -> None:
    """Fail now, before any work, if the output folder cannot be written beside ``final``."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        # named like a temp folder of this process, so a parallel run never sweeps it away
        probe = tempfile.mkdtemp(prefix=f"{owned_prefix(final.name)}probe", dir=final.parent)
        Path(probe).rmdir()
    except OSError as err:
        raise StorageError(final.parent, f"cannot write the stage output here ({err})") from err
    if final.exists() and not final.is_dir():
        raise StorageError(final, "exists and is not a folder; move it away")


@contextmanager
def _swap_lock(final: Path) -> Iterator[None]:
    """Hold ``flock(2)`` on the output folder's parent while swapping (the kernel releases it
    if the holder dies). Hand-written on the directory itself because a lock library needs a
    lock file of its own, which would sit among the outputs."""
    import fcntl

    fd = os.open(final.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def stage_output(final: Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``final``; on success it replaces ``final``.

    On any error or interrupt the temp folder is removed and the previous outputs (if any) stay
    untouched. Parallel runs of one stage (tune workers) each write their own temp folder; their
    swaps take turns under a lock, and the last one wins.

    Raises:
        StorageError: The folder cannot be written, or the swap failed (then ``final`` holds
            the previous outputs again).
    """
    check_writable(final)
    sweep_leftovers(final)
    tmp = Path(tempfile.mkdtemp(prefix=owned_prefix(final.name), dir=final.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    old = tmp.with_name(tmp.name + OLD)
    with _swap_lock(final):
        try:
            if (final / ".gitignore").exists():  # DVC's list of cached outputs: keep it
                shutil.copy(final / ".gitignore", tmp / ".gitignore")
            if final.exists():
                final.rename(old)
            tmp.rename(final)
        except OSError as err:
            where = ""
            if old.exists() and not final.exists():
                try:
                    old.rename(final)
                except OSError as again:
                    where = f"; the previous outputs are in {old} ({again})"
            _remove(tmp)
            problem = f"cannot replace it with the new outputs ({err}){where}"
            raise StorageError(final, problem) from err
    if old.exists():
        _remove(old)
