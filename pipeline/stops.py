"""A stop request (SIGINT, SIGTERM) that survives an exception Python had to swallow.

The stage shell turns a signal into :class:`pipeline.errors.Interrupted`, raised by the signal
handler wherever the main thread is. When that is inside a finalizer or a weak-reference
callback (SQLAlchemy's registry cleans up through them), Python prints "Exception ignored in"
and carries on: a SIGTERM'd tune then trained on for minutes (seen in CI). So the handler also
records the request here, and the training loop raises it at its next step
(:meth:`pipeline.transfer.module.TransferModule.on_train_batch_end`).
"""

from __future__ import annotations

_requested: list[BaseException] = []
_settled: list[bool] = []


def settle() -> None:
    """The stage's work is done and recorded: a signal from now on is not an interrupt of it
    (the shell ignores it, so outputs and FINISHED runs are not reported as interrupted)."""
    _settled[:] = [True]


def settled() -> bool:
    """Whether :func:`settle` was called since the last :func:`clear`."""
    return bool(_settled)


def request(err: BaseException) -> None:
    """Record ``err`` as the process's pending stop."""
    _requested[:] = [err]


def clear() -> None:
    """Forget the pending stop and the settled state (the shell that recorded them has
    finished)."""
    _requested.clear()
    _settled.clear()


def raise_if_requested() -> None:
    """Raise the pending stop, if any (again, if its first raise was swallowed)."""
    if _requested:
        raise _requested[0]
