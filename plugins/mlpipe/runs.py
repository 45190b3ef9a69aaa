"""A pipeline run's folder in the artifact store: ``<store>/<pipeline>/runs/<run id>/``.

The folder holds the resolved ``spec.json`` (written once when the run starts)
and one sub-folder per step. A step writes only under its own folder and ends by
writing ``result.json`` there, so a folder without ``result.json`` is an
unfinished step that nothing downstream may use.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from mlpipe import storage
from mlpipe.spec import Spec, parse

DEFAULT_STORE = "file:///tmp/mlpipe-store"
RESULT = "result.json"


def store_uri() -> str:
    """The artifact store root, from ``$MLPIPE_STORE``."""
    return storage.normalize(os.environ.get("MLPIPE_STORE", DEFAULT_STORE))


def safe_run_id(run_id: str) -> str:
    """An Airflow run id made safe for a path segment (``manual__2026-01-01T00:00:00+00:00``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")


def run_uri(pipeline: str, run_id: str, store: str | None = None) -> str:
    return storage.join(store or store_uri(), pipeline, "runs", safe_run_id(run_id))


def start(spec: Spec, run_id: str, store: str | None = None) -> str:
    """Write the resolved spec of a new run (or a retried one) and return the run URI."""
    uri = run_uri(spec.name, run_id, store)
    storage.write_bytes(storage.join(uri, "spec.json"), spec.to_json().encode())
    return uri


class StepNotFinished(RuntimeError):
    """An earlier step's output was asked for, but that step has not finished in this run."""


@dataclass(frozen=True)
class Run:
    """What a step sees of its run: the spec and the folders of every step."""

    uri: str

    @cached_property
    def spec(self) -> Spec:
        return parse(storage.read_json(storage.join(self.uri, "spec.json")), source=f"{self.uri}/spec.json")

    @property
    def run_id(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    def path(self, step: str, *parts: str) -> str:
        """URI of an output of ``step`` in this run."""
        return storage.join(self.uri, step, *parts)

    def result(self, step: str) -> dict[str, Any]:
        """The result of an earlier step; raises :class:`StepNotFinished` when it has none."""
        uri = self.path(step, RESULT)
        if not storage.exists(uri):
            raise StepNotFinished(f"step {step!r} has not finished in run {self.uri} (no {RESULT})")
        return storage.read_json(uri)
