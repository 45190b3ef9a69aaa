"""score: the champion scores a batch, one bounded chunk at a time.

The batch (a CSV or Parquet file, or a folder of them such as ``mlpipe synth`` writes;
``file://`` or ``s3://``; read by :func:`mlpipe.data.datasets.batches`) is the trigger option
``input_uri`` or the spec's ``scoring.source``; a run started by ``incoming_batch`` asset events scores every
batch they announced, one after the other into the same outputs (:func:`batch_uris`). Each chunk of
``scoring.chunk_rows`` rows gets the spec's PII rules, is checked against the training schema with Great
Expectations (a missing column or a column of the wrong type fails the batch,
naming the column; values outside the reference profile are counted and
reported), and is scored by ``models:/<model>@champion``. Per chunk it writes:

- ``predictions/part-<n>.parquet``: id columns, what the model predicts, ``model_version``, ``scored_at``.
  Binary: ``score``, ``decision`` (score at or above the champion's decision threshold) and, unless the spec's
  ``reason_count`` is 0, ``reasons``: a declined row's reason codes as JSON text (:mod:`mlpipe.model.reasons`,
  the same as ``/predict`` gives the record), ``[]`` for an approved one; regression: ``score``, the value;
  multiclass: ``probability_<class>`` for each class and ``predicted_class``;
- ``inputs/part-<n>.parquet``: the masked feature columns and the score (the class probabilities), kept for
  drift monitoring.

Memory holds one chunk, and the outputs of the one before while a worker thread writes them
(:func:`written_behind`), whatever the size of the batch. A batch whose rows
repeat an id, or lack one, is refused (:mod:`mlpipe.data.ids`): outcomes are joined by id.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlpipe.core import uris
from mlpipe.core.assets import INPUT_URIS
from mlpipe.core.errors import Refused
from mlpipe.core.results import Score
from mlpipe.core.tasks import Task
from mlpipe.data import datasets
from mlpipe.data.ids import UniqueIds
from mlpipe.data.pii import mask_pii
from mlpipe.model.reasons import ReasonCodes
from mlpipe.model.tabular import PREDICTED_CLASS, TabularModel
from mlpipe.registry.names import CHAMPION, THRESHOLD_TAG
from mlpipe.store.runs import Run
from mlpipe.validation.failures import describe_failure
from mlpipe.validation.merge import BatchRun
from mlpipe.validation.suites import batch_frame, column_expectations, expectations, profiled_columns

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)
STRUCTURAL = ("expect_column_to_exist", "expect_column_values_to_be_in_type_list")


def champion(model_name: str, binary: bool) -> tuple[TabularModel, int, float | None]:
    """The champion's model, version number and, ``binary``, decision threshold."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from mlpipe.model.pyfunc import load_version

    try:
        version = MlflowClient().get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        raise Refused(f"registered model {model_name!r} has no {CHAMPION!r} version to score with; "
                        "train and promote one first") from None
    model = load_version(model_name, version.version)
    return model, int(version.version), float(version.tags[THRESHOLD_TAG]) if binary else None


def schema_checks(spec, profiled: dict[str, dict[str, Any]], columns: list[str]) -> list:
    """Training-schema checks of a batch: the reference profile's checks of the model's input columns."""
    gxe = expectations()
    checks = [gxe.ExpectColumnToExist(column=name) for name in columns]
    for name in columns:
        if name in profiled:
            checks += column_expectations(name, profiled[name], spec.validation)
    return checks


def check_chunk(frame: pd.DataFrame, validation: BatchRun, profiled: dict, issues: Counter) -> None:
    """Fail on a structural problem (missing column, wrong type); count rows with unexpected values.

    ``validation`` has checked the chunks before; GX checks the rows of this one whose verdict only it can
    give (:class:`BatchRun`), and ``issues`` become the counts of all the chunks so far.
    """
    text = [name for name, entry in profiled.items() if "categories" in entry]
    result = validation.add(batch_frame(frame, text))
    broken = [item for item in getattr(result, "results", [])
              if not item.success and item.expectation_config.type in STRUCTURAL]
    if broken:
        raise Refused("the batch does not match the training schema:\n"
                        + "\n".join(sorted(describe_failure(item) for item in broken)))
    issues.clear()  # the chunks' counts so far
    for config, count in validation.unexpected_counts():
        issues[f"{config.kwargs['column']}: {config.type}"] += count


def predicted(model: TabularModel, frame: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """What ``model`` predicts for each row of ``frame`` (index 0..n-1): ``score`` and, at ``threshold`` (binary),
    ``decision``; a regression model's value as ``score``; a multiclass model's class probabilities and
    predicted class (:meth:`TabularModel.class_frame`)."""
    import pandas as pd

    scores = model.scores(frame)
    if model.task == Task.MULTICLASS:
        return model.class_frame(scores, pd.RangeIndex(len(frame)))
    found = pd.DataFrame({"score": scores})
    if threshold is not None:
        found["decision"] = scores >= threshold
    return found


def reason_texts(model: TabularModel, frame: pd.DataFrame, declined: np.ndarray, reasons: ReasonCodes) -> list[str]:
    """Each row's reason codes (:meth:`ReasonCodes.of_rows`) as JSON text: a ``declined`` row's, ``[]`` for an
    approved one. Only the declined rows' contributions are computed."""
    import numpy as np

    texts = ["[]"] * len(frame)
    rows = np.flatnonzero(declined)
    if len(rows):
        chosen = frame.iloc[rows]
        features = chosen[model.schema["columns"]].astype(object)
        values = features.where(features.notna(), None).to_numpy()  # any kind of missing value: None
        for at, found in zip(rows, reasons.of_rows(model.schema, model.contribution_values(chosen), values),
                             strict=True):
            texts[at] = json.dumps(found, separators=(",", ":"))
    return texts


def score_chunk(model: TabularModel, frame: pd.DataFrame, spec, version: int, threshold: float | None,
                scored_at: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The predictions of one chunk (a binary model's with reason codes, as the spec asks), and its inputs (masked
    features + what the model predicts) for monitoring."""
    import pandas as pd

    found = predicted(model, frame, threshold)
    if threshold is not None and (reasons := ReasonCodes.of(spec)) is not None:
        found["reasons"] = reason_texts(model, frame, found["decision"].to_numpy(), reasons)
    predictions = pd.concat([pd.DataFrame({c: frame[c].to_numpy() for c in spec.id_columns}), found], axis=1)
    predictions["model_version"] = version
    predictions["scored_at"] = scored_at
    inputs = frame[[*spec.id_columns, *model.schema["columns"]]].reset_index(drop=True)
    outputs = found.drop(columns=["decision", "reasons", PREDICTED_CLASS], errors="ignore")
    return predictions, pd.concat([inputs, outputs], axis=1)


def release_memory() -> None:
    """Give the chunk's memory back: collect cycles (Great Expectations leaves many), and ask glibc to
    return freed pages, which fragmentation otherwise keeps (measured: peak RSS ~1.6 GB -> ~0.9 GB at 3M rows)."""
    gc.collect()
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextmanager
def written_behind(outputs: dict[str, datasets.PartWriter]) -> Iterator[Callable[[dict[str, pd.DataFrame]], None]]:
    """A function that writes a chunk's frames (output name -> frame) as the next part of each output in a
    worker thread, while the next chunk is read and scored (Parquet encoding and zstd leave Python's lock).

    One chunk's writes are in flight at a time, so memory holds two chunks' outputs at most, and the parts are
    numbered in chunk order. A failed write raises at the next chunk's, or when the block ends; the block ends
    once every write has finished.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlpipe-score-write") as worker:
        pending: Future | None = None

        def write_parts(frames: dict[str, pd.DataFrame]) -> None:
            for name, frame in frames.items():
                outputs[name].write(frame)

        def write(frames: dict[str, pd.DataFrame]) -> None:
            nonlocal pending
            if pending is not None:
                pending.result()
            pending = worker.submit(write_parts, frames)

        yield write
        if pending is not None:
            pending.result()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Leave the objects made so far (the libraries' modules, the model) out of collections within the block
    (:func:`gc.freeze`): :func:`release_memory` then walks the objects a chunk made, not ~0.3 s of the others."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def phase(seconds: Counter, name: str) -> Iterator[None]:
    """Add the time spent in the block to ``seconds[name]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        seconds[name] += time.perf_counter() - started


def timed(items: Iterator[Any], seconds: Counter, name: str) -> Iterator[Any]:
    """``items``, adding the time spent producing each one to ``seconds[name]``."""
    while True:
        with phase(seconds, name):
            item = next(items, None)
        if item is None:
            return
        yield item


def batch_uris(run: Run) -> list[str]:
    """What a scoring run scores: the batches announced by the asset events that started it (oldest first, the
    :data:`~mlpipe.core.assets.INPUT_URIS` option), else its ``input_uri`` option, else the spec's
    ``scoring.source``."""
    found = run.options.get(INPUT_URIS) or [run.options.get("input_uri") or run.spec.scoring.source]
    if not found[0]:
        raise Refused("nothing to score: give the input_uri option or set scoring.source in the spec")
    return found


def score(run: Run) -> Score:
    spec = run.spec
    sources = [uris.normalize(uri) for uri in batch_uris(run)]
    source = ", ".join(sources)
    binary = spec.target.task == Task.BINARY
    model, version, threshold = champion(spec.registered_model, binary)
    profiled = profiled_columns(spec.validation.profile)
    validation = BatchRun(f"{spec.name}_score", schema_checks(spec, profiled, model.schema["columns"]))
    scored_at = datetime.now(UTC).isoformat()
    issues: Counter = Counter()
    phases: Counter = Counter()  # seconds spent in each phase, over all chunks
    positives = 0
    outputs = {name: datasets.PartWriter(run.path("score", name)) for name in ("predictions", "inputs")}
    ids = UniqueIds(spec.id_columns, source)
    batches = (frame for uri in sources for frame in datasets.batches(uri, spec.scoring.chunk_rows,
                                                                      fmt=spec.data.format))
    with frozen_heap(), written_behind(outputs) as write:
        for frame in timed(batches, phases, "read"):
            if missing := [c for c in spec.id_columns if c not in frame.columns]:
                raise Refused(f"id_columns {missing} are not in the batch")
            ids.add(frame)
            with phase(phases, "mask_pii"):
                mask_pii(frame, spec.pii)
            with phase(phases, "validate"):
                check_chunk(frame, validation, profiled, issues)
            with phase(phases, "score"):
                predictions, inputs = score_chunk(model, frame, spec, version, threshold, scored_at)
            with phase(phases, "write"):  # the wait for the chunk before's writes, and handing this one's over
                write({"predictions": predictions, "inputs": inputs})
            positives += int(predictions["decision"].sum()) if binary else 0
            del frame, predictions, inputs
            release_memory()
    rows = outputs["predictions"].rows
    if not rows:
        raise Refused(f"{source}: the batch has no rows")
    ids.check()
    log.info("scored %d rows of %s with %s v%d (%s flagged)", rows, source, spec.registered_model, version,
             positives if binary else "none")
    return Score(source=source, rows=rows, chunks=len(outputs["predictions"].uris),
                 model_name=spec.registered_model, model_version=version, threshold=threshold,
                 positive_decisions=positives if binary else None,
                 value_issues=dict(issues), seconds_by_phase={k: round(v, 3) for k, v in phases.items()},
                 predictions=outputs["predictions"].folder, inputs=outputs["inputs"].folder)
