"""DVC stage entry points (``python -m stages.<name>``)."""

import signal
import sys
from pathlib import Path

import pipeline  # noqa: F401  (first: sets OpenMP's wait policy before anything loads torch)


def _interrupted_while_starting(signum: int, _frame: object) -> None:
    """One line and exit 130/143 for a SIGINT/SIGTERM while a stage's modules load (torch,
    Lightning, MLflow: about 3 s), before :func:`stages._shell.run_stage` installs its own
    handlers. Python's default raised KeyboardInterrupt inside importlib: a 20-90 line
    traceback. Nothing has been read or written yet, so there is nothing to clean up."""
    name = Path(sys.argv[0]).stem  # by now the stage module's path (python -m sets it so)
    sig = signal.Signals(signum).name
    print(f"stage {name} interrupted ({sig}) while starting, before any work", file=sys.stderr)
    raise SystemExit(128 + signum)


if sys.argv[:1] == ["-m"]:  # python -m stages.<name>; not an import by tests or a library user
    for _signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_signal, _interrupted_while_starting)
