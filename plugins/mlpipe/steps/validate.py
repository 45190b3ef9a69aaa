"""validate, validate_split: Great Expectations checks of the ingested data and of the split.

``validate`` builds an expectation suite from the spec and the reference profile
(``validation.profile``, see :mod:`mlpipe.data.profile`) and runs it on the ingested
snapshot: required columns exist, storage types, null fractions, numeric ranges,
categories, the target's values and the positive-class rate. ``validate_split``
checks that every split part keeps the label rate of the whole snapshot.

Every row is checked, batch by batch: the data is read ``data.batch_rows`` rows at a
time (:mod:`mlpipe.data.datasets`), GX runs on the rows of each batch whose verdict can
differ from "expected" (the others are vouched for by the same tests, see
:class:`mlpipe.validation.merge.BatchRun`), and the results are merged into the result one
run on the whole data would give (summed counts, row-weighted means, successes recomputed
with GX's rules), so memory holds one batch.

Both run GX in an ephemeral (in-memory) context, so nothing is written outside
the step's folder, which receives ``validation.json`` (the GX result) and
``report.html`` (the GX Data Docs page of that result). When an expectation
fails both are written, then :class:`Refused` lists every failure, one line
each, and the step has no ``result.json``: nothing downstream can use it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from mlpipe.core.errors import Refused
from mlpipe.core.names import PARTS
from mlpipe.core.results import Ingest, Split, Validate, ValidateSplit
from mlpipe.core.tasks import Task
from mlpipe.data import datasets
from mlpipe.data.profile import read_profile
from mlpipe.store import storage
from mlpipe.store.runs import Run
from mlpipe.validation.failures import TextInNumbers, failures
from mlpipe.validation.merge import run_batches
from mlpipe.validation.suites import (
    LABEL,
    PART,
    batch_frame,
    data_suite,
    mean_check,
    profiled_classes,
    render_html,
    target_columns,
    with_target_columns,
)

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.expectations import Expectation

log = logging.getLogger(__name__)


def check(run: Run, step: str, frames: Iterable[pd.DataFrame], checks: list[Expectation]) -> dict[str, Any]:
    """Run ``checks`` on ``frames`` (the data's batches), save the merged result and report, fail on any failure."""
    text = TextInNumbers(checks)
    result = run_batches(f"{run.spec.name}_{step}", text.counted(frames), checks)
    result_uri = storage.write_json(run.path(step, "validation.json"), result.to_json_dict())
    report_uri = storage.write_bytes(run.path(step, "report.html"), render_html(result).encode())
    evaluated = result.statistics["evaluated_expectations"]
    if not result.success:
        failed = result.statistics["unsuccessful_expectations"]
        raise Refused(f"{step}: {failed} of {evaluated} expectations failed (report: {report_uri}):\n"
                        + "\n".join(failures(result, text)))
    log.info("%s: all %d expectations passed (report: %s)", step, evaluated, report_uri)
    return {"success": True, "evaluated": evaluated, "failed": 0, "report": report_uri, "result": result_uri}


def snapshot_batches(run: Run, profiled: dict[str, dict[str, Any]], classes: list[str]) -> Iterator[pd.DataFrame]:
    """The ingested snapshot as GX checks it (:func:`batch_frame` plus the target's columns, :func:`target_columns`),
    a batch at a time."""
    spec = run.spec
    text = [name for name, entry in profiled.items() if "categories" in entry]
    for snapshot in datasets.batches(run.result(Ingest).snapshot, spec.data.batch_rows):
        yield with_target_columns(batch_frame(snapshot, text), snapshot, spec, classes)


def validate_data(run: Run) -> Validate:
    """Check every row of the ingested snapshot against the spec and the reference profile."""
    spec = run.spec
    reference = read_profile(spec.validation.profile, spec.name)
    profiled, target = reference["columns"], reference.get("target", {})
    classes = profiled_classes(spec, target)
    summary = check(run, "validate", snapshot_batches(run, profiled, classes), data_suite(spec, profiled, target))
    return Validate(**summary, profile=spec.validation.profile, data_version=run.result(Ingest).data_version)


def target_batches(run: Run, uri: str) -> Iterator[pd.DataFrame]:
    """The target column of the dataset at ``uri``, a batch at a time."""
    yield from datasets.batches(uri, run.spec.data.batch_rows, columns=[run.spec.target.column])


def snapshot_means(run: Run, columns: dict[str, str], classes: list[str]) -> tuple[dict[str, float], float]:
    """The snapshot's mean of each of the target's ``columns`` (:func:`target_columns`: binary, the positive
    rate), reading only its target column; and the width of the target's range (regression; 1 otherwise)."""
    import numpy as np

    sums, rows, low, high = dict.fromkeys(columns, 0.0), 0, np.inf, -np.inf
    for frame in target_batches(run, run.result(Ingest).snapshot):
        added = with_target_columns(frame.iloc[:, :0].copy(), frame, run.spec, classes)
        for column in columns:
            sums[column] += float(added[column].sum())
        if run.spec.target.task == Task.REGRESSION:
            low, high = min(low, float(added[LABEL].min())), max(high, float(added[LABEL].max()))
        rows += len(frame)
    width = high - low if run.spec.target.task == Task.REGRESSION else 1.0
    return {column: total / rows for column, total in sums.items()}, width


def part_batches(run: Run, classes: list[str]) -> Iterator[pd.DataFrame]:
    """The target's columns (:func:`target_columns`) of each split part, with the part's name, a batch at a time."""
    import pandas as pd

    split = run.result(Split)
    for part in PARTS:
        for frame in target_batches(run, split.folder(part)):
            yield batch_frame(with_target_columns(pd.DataFrame({PART: [part] * len(frame)}), frame, run.spec,
                                                  classes), [])


def validate_split(run: Run) -> ValidateSplit:
    """Check that each split part keeps the snapshot's target: within ``split_rate_tolerance`` of its positive
    rate (binary) or of each class's share (multiclass); a regression target's mean within that share of the
    target's range."""
    spec = run.spec
    classes = profiled_classes(spec, read_profile(spec.validation.profile, spec.name).get("target", {}))
    columns = target_columns(spec, classes)
    means, width = snapshot_means(run, columns, classes)
    margin = spec.validation.split_rate_tolerance * width
    bounded = spec.target.task != Task.REGRESSION  # shares stay within [0, 1]
    checks = [mean_check(column, subject, max(0.0, means[column] - margin) if bounded else means[column] - margin,
                         min(1.0, means[column] + margin) if bounded else means[column] + margin, part)
              for part in PARTS for column, subject in columns.items()]
    summary = check(run, "validate_split", part_batches(run, classes), checks)
    rate = means[LABEL] if spec.target.task == Task.BINARY else None
    return ValidateSplit(**summary, positive_rate=round(rate, 6) if rate is not None else None)
