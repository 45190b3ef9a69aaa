"""Sampled capture of served requests and responses, for monitoring (drift, delayed labels).

A request is captured with probability ``spec.serving.capture_fraction``; its rows
are buffered in memory and written in batches as JSON Lines under
``<store>/<pipeline>/serving/captured/<YYYY-MM-DD>/<time>-<pid>-<n>.jsonl``
(one line per answered record: time, endpoint (``predict`` or ``explain``), request id,
answering model version, the record, and the answer: score and decision, the feature
contributions of an explanation, and the shadow challenger's answer when there is one).
The server flushes when the buffer is full, every few seconds, and on shutdown;
each file is written atomically, so a reader never sees half a batch.
"""

from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import count
from typing import Any

from mlpipe.core import uris
from mlpipe.store import storage


class Capture:
    """A buffer of captured rows, flushed to the artifact store in batches."""

    def __init__(self, root: str, fraction: float, batch_rows: int = 1000,
                 sample: Callable[[], float] = random.random) -> None:
        self.root = root
        self.fraction = fraction
        self.batch_rows = batch_rows
        self._sample = sample
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._files = count(1)

    def wanted(self) -> bool:
        """Whether to capture this request (sampled)."""
        return self.fraction > 0 and (self.fraction >= 1 or self._sample() < self.fraction)

    def add(self, rows: list[dict[str, Any]]) -> bool:
        """Buffer ``rows``; return whether the buffer is full (time to flush)."""
        with self._lock:
            self._rows.extend(rows)
            return len(self._rows) >= self.batch_rows

    def flush(self) -> str | None:
        """Write the buffered rows as one JSON Lines file; return its URI (``None`` when empty)."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return None
        now = datetime.now(UTC)
        name = f"{now:%H%M%S.%f}-{os.getpid()}-{next(self._files)}.jsonl"
        uri = uris.join(self.root, f"{now:%Y-%m-%d}", name)
        body = "".join(json.dumps(row, separators=(",", ":"), default=str) + "\n" for row in rows)
        return storage.write_bytes(uri, body.encode())
