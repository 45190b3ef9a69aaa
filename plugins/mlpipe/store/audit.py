"""The audit log of model promotions, rollbacks and deploys, in the artifact store.

One JSON object per event, written once and never rewritten, at
``<store>/<pipeline>/audit/<UTC timestamp>-<model>-v<version>-<action>.json``; the
timestamp leads the name, so names sort in time order. An event names at least the
``model``, its ``version`` and the ``action``; :func:`record` adds ``time`` and ``pipeline``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from mlpipe.core import uris
from mlpipe.store import storage
from mlpipe.store.runs import store_uri


def folder(pipeline: str) -> str:
    """Where the audit log of ``pipeline`` lives."""
    return uris.join(store_uri(), pipeline, "audit")


def _name(stamp: datetime, event: dict[str, Any], attempt: int) -> str:
    action = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(event["action"]))
    suffix = f"-{attempt}" if attempt else ""
    return f"{stamp:%Y%m%dT%H%M%S.%fZ}-{event['model']}-v{event['version']}-{action}{suffix}.json"


def record(pipeline: str, event: dict[str, Any]) -> str:
    """Append ``event`` to the audit log of ``pipeline`` and return its URI (a new object, never an old one)."""
    stamp = datetime.now(UTC)
    entry = {**event, "pipeline": pipeline, "time": stamp.isoformat()}
    attempt = 0
    while storage.exists(uri := uris.join(folder(pipeline), _name(stamp, event, attempt))):
        attempt += 1
    return storage.write_json(uri, entry)


def history(pipeline: str, named: str = "") -> list[dict[str, Any]]:
    """Every event of ``pipeline``'s audit log, oldest first (each with its ``uri``); only those whose
    object names contain ``named`` when given (the others are not read)."""
    base = folder(pipeline)
    return [{**storage.read_json(uris.join(base, name)), "uri": uris.join(base, name)}
            for name in storage.children(base)
            if named in name and name.endswith(".json") and not name.startswith(".")]


def events_of(pipeline: str, model: str, version: int) -> list[dict[str, Any]]:
    """The events of ``model`` version ``version`` in ``pipeline``'s audit log, oldest first (each with its ``uri``).

    Reads only the objects whose names carry that model and version.
    """
    return [event for event in history(pipeline, named=f"-{model}-v{version}-")
            if event["model"] == model and event["version"] == version]
