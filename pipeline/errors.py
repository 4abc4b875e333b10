"""User errors: each names the config key or file, the bad value and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable


class GraftlabError(Exception):
    """Base class for errors caused by user input (config, data files, checkpoints)."""


class ConfigError(GraftlabError):
    """A config value is not allowed.

    Args:
        key: Dotted config key, e.g. ``transfer.freeze_groups``.
        value: The value found.
        allowed: What would have been accepted, in words or as a list of choices.
    """

    def __init__(self, key: str, value: object, allowed: str | Iterable[object]) -> None:
        if not isinstance(allowed, str):
            allowed = "one of " + ", ".join(repr(a) for a in allowed)
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is not allowed; expected {allowed}")


class CheckpointError(GraftlabError):
    """A checkpoint or model file is missing, unreadable or does not fit the model."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = path
        super().__init__(f"{path}: {problem}")


class DataError(GraftlabError):
    """A dataset file or folder is missing, unreadable or holds data that cannot be used.

    Args:
        path: The file or folder (or the config key that names it).
        problem: What is wrong and what is needed instead.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = path
        super().__init__(f"{path}: {problem}")


class TrainingError(GraftlabError):
    """Training diverged (NaN/inf loss) or produced no usable model."""


class StorageError(GraftlabError):
    """An output folder, tracking store or study storage cannot be read or written.

    Args:
        path: The folder, file or store URI.
        problem: What went wrong and what is needed instead.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = path
        super().__init__(f"{path}: {problem}")


class MachineError(GraftlabError):
    """The machine, not the settings being tried, failed: no GPU, out of memory, a storage gone.

    A tuning trial that ends this way stops the study without counting against it.
    """


class Interrupted(BaseException):
    """The process got SIGINT or SIGTERM.

    A ``BaseException``, like ``KeyboardInterrupt``, so that ``except Exception`` handlers unwind
    past it; not a ``KeyboardInterrupt``, which Lightning turns into ``sys.exit(1)``.

    Args:
        signum: The signal number.
    """

    def __init__(self, signum: int) -> None:
        import signal
        import time

        self.signum = signum
        self.name = signal.Signals(signum).name
        self.at_ms = int(time.time() * 1000)  # runs that ended after this were ended by it
        self.runs_ended = 0  # how many of the stage's runs it ended (KILLED), once unwound
        super().__init__(f"interrupted ({self.name})")

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum
