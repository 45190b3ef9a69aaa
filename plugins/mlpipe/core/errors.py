"""How mlpipe fails: two roots, one for each outcome a runtime acts on, and the exit status of each.

- :class:`Refused`: input the user can fix (a bad spec, missing data, failed checks). The command
  prints one line and exits with :data:`EXIT_REFUSED`; the runtimes fail the task without retries.
- :class:`Unavailable`: something needed is down for now (the store past its retry deadline, the
  MLflow server, a lease held elsewhere). One line and :data:`EXIT_UNAVAILABLE`; the runtimes retry.
- Anything else is a bug (a crash): it keeps its traceback.

Every error class of the package derives from one of the two roots; :func:`failure` is the one
place that tells them apart.
"""

from __future__ import annotations

import traceback

EXIT_REFUSED = 2
EXIT_UNAVAILABLE = 3
REFUSED, UNAVAILABLE, CRASH = "refused input", "unavailable", "crash"  # how a command fails


class Refused(Exception):
    """Input the user can act on (bad data, a bad spec, failed checks); reported as its message, no traceback."""


class Unavailable(Exception):
    """Something the command needs is unavailable for now (the MLflow server is down, a lease stays held).

    Reported as its message, no traceback, with an exit status that the runtimes retry.
    """


def failure(error: BaseException) -> tuple[str, str]:
    """How ``error`` ends a command: ``refused input`` or ``unavailable`` with its message, or ``crash``
    (a bug) with its traceback's last line. An error that is both (a store error past its retry
    deadline) is unavailable: it is retried, not refused."""
    if isinstance(error, Unavailable):
        return UNAVAILABLE, str(error)
    if isinstance(error, Refused):
        return REFUSED, str(error)
    return CRASH, "".join(traceback.format_exception_only(error)).strip()


def exit_status(kind: str) -> int:
    """The exit status of a command that failed as ``kind`` (``refused input`` or ``unavailable``)."""
    return {REFUSED: EXIT_REFUSED, UNAVAILABLE: EXIT_UNAVAILABLE}[kind]


class StorageError(Refused):
    """A URI that cannot be read or written, with the URI named."""


class StorageUnavailable(StorageError, Unavailable):
    """The store did not answer within its retry deadline (``$MLPIPE_S3_RETRY_SECONDS``): no connection, a
    transient 5xx or throttling. Unlike the other storage errors, a reason to try again later, not bad input."""
