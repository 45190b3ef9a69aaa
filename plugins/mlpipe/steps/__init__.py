"""The pipeline's steps: plain functions ``step(run: Run) -> StepResult`` that never import Airflow.

Each step reads what earlier steps wrote in the run folder and writes only under
its own folder. :func:`run_step` is the one way a step is executed (by the CLI,
hence by every runtime): it empties the step's folder, runs the function, and
writes the small JSON result (the step's model, :mod:`mlpipe.core.results`) last, so a retry starts clean
and a half-finished step is never mistaken for a finished one. A step whose MLflow tracking server did not
answer fails with a one-line message naming the server, and an exit status the runtimes retry
(:func:`mlpipe.cli.main`, :func:`mlpipe.registry.tracking.unreachable`). A step that fails leaves
``error.json`` in its folder instead of a result: how it failed (:func:`failure`) and when, so that
``mlpipe summary`` can name it; its retry empties the folder like any run.
"""

from __future__ import annotations

import importlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from mlpipe.core import uris
from mlpipe.core.errors import Refused, failure
from mlpipe.core.names import Step
from mlpipe.core.results import model_of
from mlpipe.registry import tracking
from mlpipe.store import storage
from mlpipe.store.runs import ERROR, RESULT, Run, shard_folder

log = logging.getLogger(__name__)

# step -> "module:function"; modules are imported only when their step runs.
STEPS: dict[Step, str] = {
    Step.INGEST: "mlpipe.steps.ingest:ingest",
    Step.VALIDATE: "mlpipe.steps.validate:validate_data",
    Step.SPLIT: "mlpipe.steps.split:split",
    Step.VALIDATE_SPLIT: "mlpipe.steps.validate:validate_split",
    Step.TUNE_PREPARE: "mlpipe.steps.tune:tune_prepare",
    Step.TUNE_TRIALS: "mlpipe.steps.tune:tune_trials",
    Step.TUNE: "mlpipe.steps.tune:tune_select",
    Step.TRAIN: "mlpipe.steps.train:train",
    Step.ANALYZE: "mlpipe.steps.analyze:analyze",
    Step.REGISTER: "mlpipe.steps.register:register",
    Step.DEPLOY: "mlpipe.steps.deploy:deploy",
    Step.SCORE: "mlpipe.steps.score:score",
    Step.MONITOR: "mlpipe.steps.monitor:monitor",
}

def record_failure(folder: str, record: dict[str, Any], error: Exception) -> None:
    """Write ``record`` and how ``error`` failed the step to ``<folder>/error.json``, for the run's summary.

    The store may be what failed: the step's own error is what the runtime must see, so a record
    that cannot be written is only logged.
    """
    kind, message = failure(tracking.classified(error))
    record = {**record, "kind": kind, "error": message, "failed_at": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        storage.write_json(uris.join(folder, ERROR), record)
    except Exception as unwritten:  # the store itself may be down: see above
        log.warning("the failure of step %s could not be recorded in %s: %s", record["step"], folder, unwritten)


def function(name: str):
    """The function behind step ``name``."""
    if name not in STEPS:
        raise Refused(f"unknown step {name!r}; steps are: {', '.join(STEPS)}")
    module, attr = STEPS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def run_step(name: str, run_uri: str, shard: int | None = None) -> dict[str, Any]:
    """Run step ``name`` in run ``run_uri`` and return (and store) its result, as the JSON of ``result.json``.

    A sharded step (one of several parallel workers, e.g. tuning trials) gets ``shard=<n>``
    and its own folder, ``<run>/<step>/shard-<n>/``. A step that raises leaves its
    :func:`failure` in ``error.json`` there.
    """
    step = function(name)
    run = Run(run_uri)
    folder = run.path(name) if shard is None else run.path(name, shard_folder(shard))
    storage.remove_tree(folder)
    started = time.perf_counter()
    which = {"step": name, "run": run_uri, **({} if shard is None else {"shard": shard})}
    try:
        result = step(run) if shard is None else step(run, shard=shard)
    except Exception as error:
        record_failure(folder, {**which, "seconds": round(time.perf_counter() - started, 3)}, error)
        raise
    result = result.model_copy(update={"run": run_uri, "seconds": round(time.perf_counter() - started, 3)})
    stored = {**which, **result.stored()}
    model_of(name).parse(stored, f"the result of step {name}")  # what is written reads back: a bad key fails here
    storage.write_json(uris.join(folder, RESULT), stored)
    log.info("step %s finished in %.2fs", name, result.seconds)
    return stored
