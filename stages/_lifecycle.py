"""How a stage run begins and ends: interrupts, crashes and what dead runs left behind.

- SIGINT and SIGTERM raise :class:`pipeline.errors.Interrupted` in the main thread, so every
  ``with`` block unwinds (temp folders are removed, trials are told) and the shell exits 130 or
  143 after one line, instead of Lightning's silent ``sys.exit(1)`` on ``KeyboardInterrupt``.
- When a stage ends by an interrupt its MLflow runs end KILLED; by an error, FAILED. Nothing it
  started stays RUNNING.
- Before a stage works, it removes what killed runs of the same stage left on this host: temp
  output folders and MLflow runs still RUNNING (marked KILLED).
"""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig

from pipeline import stops
from pipeline.errors import Interrupted

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGINT, signal.SIGTERM)
_experiments: set[str] = set()  # MLflow experiments this process has logged to


def tracking_started(experiment_id: str) -> None:
    """Remember an experiment this process logs to (its runs are ended on the way out)."""
    _experiments.add(experiment_id)


@contextmanager
def interrupts(exiting: bool = False) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Interrupted` (the first one; later ones are
    ignored, so the clean-up they would cut short can finish). The stop is also recorded in
    :mod:`pipeline.stops`, so one raised where Python must swallow it (a finalizer) is raised
    again by the training loop, without Python's "Exception ignored" traceback.

    ``exiting``: the process only exits after this (a stage run from the command line), so the
    signals are ignored from then on instead of given back to Python's handlers: in the
    interpreter's finalization (~0.2-1 s: atexit callbacks, then the default action) a Ctrl-C
    printed a KeyboardInterrupt traceback or killed the process by the signal, after its
    outputs, runs and one line were complete. SIG_IGN outlives finalization, which resets only
    handlers that are Python functions."""
    seen: list[Interrupted] = []

    def handler(signum: int, _frame: object) -> None:
        if seen:
            return
        err = Interrupted(signum)
        seen.append(err)
        if stops.settled():  # after the stage's work was done and recorded: let it exit
            log.debug("%s after the stage finished: ignored", err)
            return
        stops.request(err)  # raised again by the training loop if this raise is swallowed
        raise err

    def unraisable(info: object) -> None:
        # the handler raised inside a finalizer or weak-reference callback (say, during a
        # garbage collection): Python would print "Exception ignored in" and a traceback; the
        # stop is pending and the training loop raises it again (pipeline.stops)
        if not isinstance(getattr(info, "exc_value", None), Interrupted):
            default(info)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    default, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    finally:
        stops.clear()
        sys.unraisablehook = default
        for s, h in previous.items():
            signal.signal(s, signal.SIG_IGN if exiting else h)


def _end_runs(status: str, since_ms: int | None = None) -> int:
    """End this process's runs still RUNNING with ``status``; how many there were."""
    from pipeline.tracking.owners import end_own_runs

    count = 0
    for experiment_id in sorted(_experiments):
        try:
            ended = end_own_runs(experiment_id, status, since_ms)
        except Exception as err:  # the store itself may be what failed: say so, do not mask
            log.warning("could not mark this stage's MLflow runs %s (%s)", status, err)
            continue
        count += len(ended)
        log.debug("marked %d MLflow run(s) %s", len(ended), status)  # the error line says it
    return count


@contextmanager
def guarded(stage: str, cfg: DictConfig) -> Iterator[None]:
    """Check the output folder can be written and sweep what dead runs of ``stage`` left (and
    Lightning's temp folders of fits in killed processes of any stage); run
    the body; end the stage's runs however it ends, then fold a SQLite store's write-ahead log
    into its database file (:func:`pipeline.tracking.store.checkpoint`)."""
    from pipeline.processes import FIT_ROOT
    from pipeline.tracking.owners import sweep_dead_runs
    from pipeline.tracking.store import checkpoint
    from stages._outputs import check_writable, sweep_leftovers
    from stages._shell import use_tracking

    check_writable(Path(cfg.paths[stage]))
    sweep_leftovers(Path(cfg.paths[stage]))
    tmp = tempfile.gettempdir()
    sweep_leftovers(Path(tmp) / FIT_ROOT, f"(Lightning's fit folders) in {tmp}")
    uri, experiment_id = use_tracking(cfg)
    sweep_dead_runs(experiment_id, stage)
    try:
        yield
        stops.raise_if_requested()  # a stop swallowed after the last training step
        stops.settle()  # done: a signal from here on does not turn it into an interrupted stage
    except Interrupted as err:
        err.runs_ended = _end_runs("KILLED", err.at_ms)
        raise
    except BaseException:
        _end_runs("FAILED")
        raise
    finally:
        checkpoint(uri)
