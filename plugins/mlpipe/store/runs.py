"""A pipeline run's folder in the artifact store: ``<store>/<pipeline>/runs/<run id>/``.

The folder holds the resolved ``spec.json`` and the trigger ``options.json``
(written once when the run starts) and one sub-folder per step. A step writes
only under its own folder and ends by writing ``result.json`` there, so a folder
without ``result.json`` is an unfinished step that nothing downstream may use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar, overload

from mlpipe.core import settings, uris
from mlpipe.core.errors import Refused, StorageError
from mlpipe.core.results import StepResult
from mlpipe.core.spec import Spec, parse
from mlpipe.store import storage

RESULT = "result.json"
ERROR = "error.json"  # how a step failed, in its folder instead of a result (mlpipe.steps.run_step)
TRAINING, SCORING, MONITORING = "runs", "scoring", "monitoring"  # kinds of run folders
OPTIONS = "options.json"
SHARD = "shard-"  # the folders of a sharded step's workers: shard-0, shard-1, ...
CATEGORICAL_RESULT = "categorical"  # the categorical features ingest resolved, in its result
R = TypeVar("R", bound=StepResult)


def store_uri() -> str:
    """The artifact store root, from ``$MLPIPE_STORE``."""
    return uris.normalize(settings.store())


def captured_folder(pipeline: str, store: str | None = None) -> str:
    """Where the model server puts a pipeline's captured requests (:mod:`mlpipe.serving.capture`)."""
    return uris.join(store or store_uri(), pipeline, "serving", "captured")


def safe_run_id(run_id: str) -> str:
    """An Airflow run id made safe for a path segment (``manual__2026-01-01T00:00:00+00:00``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")


def run_uri(pipeline: str, run_id: str, store: str | None = None, kind: str = TRAINING) -> str:
    """``<store>/<pipeline>/<kind>/<run id>``: training runs under ``runs/``, batch scoring under ``scoring/``,
    monitoring under ``monitoring/``."""
    return uris.join(store or store_uri(), pipeline, kind, safe_run_id(run_id))


def start(spec: Spec, run_id: str, store: str | None = None, options: dict[str, Any] | None = None,
          kind: str = TRAINING) -> str:
    """Write the resolved spec and the trigger options of a new (or retried) run; return the run URI."""
    uri = run_uri(spec.name, run_id, store, kind)
    storage.write_bytes(uris.join(uri, "spec.json"), spec.to_json().encode())
    storage.write_json(uris.join(uri, OPTIONS), options or {})
    return uri


def shard_folder(shard: int) -> str:
    """The sub-folder of one shard of a sharded step."""
    return f"{SHARD}{shard}"


def newest_first(folder: str) -> list[str]:
    """The URIs of the runs in ``folder`` (``<store>/<pipeline>/<kind>``), the most recently started first."""
    started = {uri: storage.modified(uris.join(uri, "spec.json"))
               for uri in (uris.join(folder, name) for name in storage.children(folder))
               if storage.exists(uris.join(uri, "spec.json"))}
    return sorted(started, key=started.__getitem__, reverse=True)


def latest(pipeline: str, store: str | None = None, kind: str = TRAINING) -> str:
    """The URI of the most recently started run of ``pipeline`` (of ``kind``), finished, failed or running."""
    folder = uris.join(store or store_uri(), pipeline, kind)
    if not (started := newest_first(folder)):
        raise StorageError(f"{folder}: no runs of pipeline {pipeline!r} yet")
    return started[0]


class StepNotFinished(Refused, RuntimeError):
    """An earlier step's output was asked for, but that step has not finished in this run."""


@dataclass(frozen=True)
class Run:
    """What a step sees of its run: the spec and the folders of every step."""

    uri: str

    @cached_property
    def spec(self) -> Spec:
        """The run's spec (``spec.json``); once ingest has finished, with ``features.categorical`` listing every
        categorical feature, as ingest resolved them from the spec, the reference profile and the data."""
        written = parse(storage.read_json(uris.join(self.uri, "spec.json")), source=f"{self.uri}/spec.json")
        ingested = self.path("ingest", RESULT)
        categorical = storage.read_json(ingested).get(CATEGORICAL_RESULT) if storage.exists(ingested) else None
        if categorical is None:
            return written
        features = written.features.model_copy(update={"categorical": categorical})
        return written.model_copy(update={"features": features})

    @cached_property
    def options(self) -> dict[str, Any]:
        """How the run was triggered (notes, force_promote, ...); empty for runs started without any."""
        uri = uris.join(self.uri, OPTIONS)
        return storage.read_json(uri) if storage.exists(uri) else {}

    @property
    def run_id(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    def path(self, step: str, *parts: str) -> str:
        """URI of an output of ``step`` in this run."""
        return uris.join(self.uri, step, *parts)

    @overload
    def result(self, step: type[R], shard: int | None = None) -> R: ...

    @overload
    def result(self, step: str, shard: int | None = None) -> dict[str, Any]: ...

    def result(self, step: type[R] | str, shard: int | None = None) -> R | dict[str, Any]:
        """The result of an earlier step (or of one shard of it); raises :class:`StepNotFinished` when it has none.

        ``step`` is the step's result model (``run.result(Train).model_folder``): the result parsed, or a
        :class:`~mlpipe.core.results.ResultError` naming the file and each field that does not parse. A step
        name gives the raw JSON, for code that passes any step's result on as it is (the runtimes' XCom).
        """
        name = str(step) if isinstance(step, str) else step.step.value
        uri = self.path(name, RESULT) if shard is None else self.path(name, shard_folder(shard), RESULT)
        if not storage.exists(uri):
            which = name if shard is None else f"{name} shard {shard}"
            raise StepNotFinished(f"step {which!r} has not finished in run {self.uri} (no {RESULT})")
        data = storage.read_json(uri)
        return data if isinstance(step, str) else step.parse(data, uri)

    def failures(self, step: str) -> list[dict[str, Any]]:
        """How ``step`` (or shards of it) failed in its last try: the ``error.json`` records in its folders."""
        folder = self.path(step)
        shards = [name for name in storage.children(folder) if name.startswith(SHARD)]
        records = [uris.join(folder, ERROR), *(uris.join(folder, name, ERROR) for name in shards)]
        return [storage.read_json(uri) for uri in records if storage.exists(uri)]
