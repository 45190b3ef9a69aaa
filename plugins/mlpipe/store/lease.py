"""An exclusive, expiring lease in the artifact store: one holder at a time (e.g. of a model's promotion).

A lease is a folder of small JSON objects, one per change of hands, named by a growing
generation number (``000000000007.json``). The newest one is the lease's state: ``held``
by ``owner`` until ``expires`` (seconds since the epoch), or ``free``. Every change creates
the next generation with :func:`mlpipe.store.storage.create_exclusive` (S3 ``IfNoneMatch``, a local
hard link), so of several processes racing for the same change exactly one wins, on a local
folder and on S3 alike; nothing is ever overwritten or deleted (the folder is the lease's
history, one small object per take and per release).

A holder that crashed never frees its lease: it expires ``ttl`` seconds after it was taken,
and the next taker moves past it (with a warning naming the crashed owner). The same owner
(e.g. the retry of a task whose process died) takes its own hold over at once. Each hold
also records the host and process that took it. Expiry compares
wall clocks of different machines, so ``ttl`` must be far longer than both the work done
under the lease and any clock skew. A holder still working past its ``ttl`` may have lost the
lease: :func:`confirm`, called right before the effects the lease guards, then fails instead
of acting, and :func:`release` says so in the log instead of freeing someone else's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlpipe.core import uris
from mlpipe.core.errors import Unavailable
from mlpipe.store import storage

log = logging.getLogger(__name__)

HELD, FREE = "held", "free"
GENERATION = re.compile(r"(\d{12})\.json")
POLL_SECONDS = 0.5


class LeaseBusy(Unavailable):
    """The lease stayed held by another owner for as long as the caller would wait."""


@dataclass(frozen=True)
class Lease:
    """A lease this process holds: its folder, generation, owner and expiry."""

    folder: str
    generation: int
    owner: str
    expires: float


def _uri(folder: str, generation: int) -> str:
    return uris.join(folder, f"{generation:012d}.json")


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def current(folder: str) -> tuple[int, dict[str, Any] | None]:
    """The newest generation of the lease at ``folder`` and its state (``0, None`` for a new lease)."""
    names = [name for name in storage.children(folder) if GENERATION.fullmatch(name)]
    if not names:
        return 0, None
    newest = max(names)
    return int(newest.removesuffix(".json")), storage.read_json(uris.join(folder, newest))


def _create(folder: str, generation: int, state: dict[str, Any]) -> bool:
    return storage.create_exclusive(_uri(folder, generation), json.dumps(state, sort_keys=True).encode())


def acquire(folder: str, owner: str, ttl: float, wait: float) -> Lease:
    """Take the lease at ``folder`` for ``ttl`` seconds, waiting up to ``wait`` seconds while another owner holds it.

    Raises :class:`LeaseBusy` naming the holder when the wait runs out.
    """
    deadline = time.monotonic() + wait
    while True:
        generation, state = current(folder)
        now = time.time()
        if state is not None and state["state"] == HELD and state["expires"] > now and state["owner"] != owner:
            if time.monotonic() >= deadline:
                raise LeaseBusy(f"lease {folder} is held by {state['owner']} until {_stamp(state['expires'])}; "
                                f"gave up after waiting {wait:g} s")
            time.sleep(POLL_SECONDS)
            continue
        if state is not None and state["state"] == HELD:
            log.warning("lease %s: %s's hold (%s) %s without a release; taking it over", folder, state["owner"],
                        state["process"], "was left by an earlier attempt" if state["owner"] == owner
                        else f"expired at {_stamp(state['expires'])}")
        lease = Lease(folder, generation + 1, owner, now + ttl)
        if _create(folder, lease.generation, {"state": HELD, "owner": owner, "taken": _stamp(now),
                                              "expires": lease.expires,
                                              "process": f"host {socket.gethostname()}, pid {os.getpid()}"}):
            log.info("lease %s: taken by %s (generation %d, until %s)", folder, owner, lease.generation,
                     _stamp(lease.expires))
            return lease
        # Another process took this generation first: look again at once.


class LeaseLost(Unavailable):
    """The holder's lease expired and another owner took it: the holder must not act on it any more."""


def confirm(lease: Lease) -> None:
    """Raise :class:`LeaseLost` unless ``lease`` is still the newest generation and unexpired.

    A holder calls it right before the effects the lease guards, so work that outlived the
    lease is dropped (and retried) instead of interleaving with the next holder's.
    """
    generation, state = current(lease.folder)
    if generation != lease.generation or time.time() >= lease.expires:
        holder = f"{state['owner']} ({state['state']})" if generation != lease.generation else "nobody yet"
        raise LeaseLost(f"lease {lease.folder}: {lease.owner}'s hold expired at {_stamp(lease.expires)} "
                        f"(now: {holder}); its work is dropped, to be retried")


def release(lease: Lease) -> None:
    """Free ``lease`` (the next generation says ``free``), unless another owner took it over after it expired."""
    if _create(lease.folder, lease.generation + 1, {"state": FREE, "owner": lease.owner,
                                                    "released": _stamp(time.time())}):
        return
    log.warning("lease %s: %s held it past its expiry (%s) and another owner took it over",
                lease.folder, lease.owner, _stamp(lease.expires))


@contextlib.contextmanager
def held(folder: str, owner: str, ttl: float, wait: float) -> Iterator[Lease]:
    """Hold the lease at ``folder`` for the ``with`` block (see :func:`acquire`); freed however the block ends."""
    lease = acquire(folder, owner, ttl, wait)
    try:
        yield lease
    finally:
        release(lease)
