"""A short human summary of a pipeline run (training, scoring or monitoring), read from its steps' results.

``python -m mlpipe summary --run <uri>`` prints it. A step that failed is shown as
"FAILED" with its error (its ``error.json``, :func:`mlpipe.steps.run_step`), a step without
a result (not run yet, or still running) as "not run"; a failed run ends by pointing to the
pipeline's last successful run. Nothing here needs the step libraries, MLflow or the data itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlpipe.core import uris
from mlpipe.core.errors import StorageError
from mlpipe.core.lines import (
    analysis_line,
    checks_line,
    data_line,
    registry_line,
    split_line,
    training_line,
    tuning_line,
)
from mlpipe.core.names import Step
from mlpipe.core.results import (
    Analyze,
    Deploy,
    Ingest,
    Monitor,
    Register,
    ResultError,
    Score,
    Split,
    StepResult,
    Train,
    Tune,
    Validate,
    ValidateSplit,
)
from mlpipe.store import runs, storage
from mlpipe.store.runs import MONITORING, SCORING, TRAINING, Run, StepNotFinished

NOT_RUN = "not run"
ERROR_LINES = 8  # of a failed step's error message (validate lists each failed check)
PARTS_OF = {Step.TUNE: (Step.TUNE_PREPARE, Step.TUNE_TRIALS)}  # steps whose failure a section's line shows too


def _deploy(result: Deploy) -> str:
    if result.skipped:
        return f"skipped: {result.skipped}"
    return f"version {result.version} serving at {result.server} (smoke test on {result.smoke_rows} rows)"


def _scoring(result: Score) -> str:
    flagged = "" if result.positive_decisions is None else f", {result.positive_decisions:,} flagged"
    return (f"{result.rows:,} rows of {result.source} with {result.model_name} version "
            f"{result.model_version}{flagged}; predictions {result.predictions}")


def _monitoring(result: Monitor) -> str:
    rows = result.rows
    drifting = ", ".join(result.drifting_features) or "none"
    return (f"{result.status}: {result.message}\n    {rows['total']:,} rows ({rows['batch']:,} batch, "
            f"{rows['served']:,} served) vs champion version {result.champion_version}; drifting features: "
            f"{drifting}\n    report {result.report_html}")


Section = tuple[str, type[StepResult], Callable[[Any], str]]  # label, the step's result, its line
SECTIONS: list[Section] = [
    ("data", Ingest, data_line),
    ("validation", Validate, checks_line),
    ("split", Split, split_line),
    ("split checks", ValidateSplit, checks_line),
    ("tuning", Tune, tuning_line),
    ("training", Train, training_line),
    ("analysis", Analyze, analysis_line),
    ("registry", Register, registry_line),
    ("deploy", Deploy, _deploy),
]
SECTIONS_OF_KIND: dict[str, list[Section]] = {
    TRAINING: SECTIONS, SCORING: [("scoring", Score, _scoring)], MONITORING: [("monitoring", Monitor, _monitoring)]}


def _sections(run: Run) -> list[Section]:
    return SECTIONS_OF_KIND.get(run.uri.rstrip("/").rsplit("/", 2)[-2], SECTIONS)


def _failed(run: Run, step: Step, indent: int) -> str | None:
    """``FAILED in <step> (<kind>): <error>`` of ``step`` or of a step it stands for; ``None`` if none failed."""
    failures = [record for part in (*PARTS_OF.get(step, ()), step) for record in run.failures(part)]
    if not failures:
        return None
    record = failures[0]
    which = record["step"] + (f" shard {record['shard']}" if "shard" in record else "")
    more = f" (and {len(failures) - 1} more failed)" if len(failures) > 1 else ""
    first, *rest = record["error"].splitlines() or [""]
    if len(rest) > ERROR_LINES:
        rest = [*rest[:ERROR_LINES], f"... {len(rest) - ERROR_LINES} more lines"]
    return "\n".join([f"FAILED in {which} ({record['kind']}){more}: {first}",
                      *(" " * indent + line for line in rest)])


def _succeeded(run: Run) -> bool:
    """Whether every step of the run finished."""
    return all(storage.exists(run.path(model.step, runs.RESULT)) for _, model, _ in _sections(run))


def _last_success(run: Run) -> str:
    """The line that points from a failed run to the newest run of its pipeline (and kind) that succeeded."""
    folder = run.uri.rstrip("/").rsplit("/", 1)[0]
    earlier = next((Run(uri) for uri in runs.newest_first(folder)
                    if uri.rstrip("/") != run.uri.rstrip("/") and _succeeded(Run(uri))), None)
    if earlier is None:
        return f"no successful run of pipeline {run.spec.name} in {folder}"
    try:
        registered = earlier.result(Register) if _sections(earlier) is SECTIONS else None  # a training run
    except ResultError:  # written by an older version: the run is still the last successful one
        registered = None
    promoted = (f": {registered.model_name} version {registered.version}, "
                f"{'promoted to champion' if registered.promoted else 'not promoted'}") if registered else ""
    return f"last successful run: {earlier.uri}{promoted}"


def summarize(run_uri: str) -> str:
    """What the run at ``run_uri`` produced, one line per step; failed steps read "FAILED" with their error,
    unfinished ones "not run"; a failed run ends with a pointer to the last successful one."""
    if not storage.exists(uris.join(run_uri, "spec.json")):
        raise StorageError(f"{run_uri}: not a pipeline run folder (no spec.json)")
    run = Run(run_uri)
    lines = [f"run {run.uri} (pipeline {run.spec.name})"]
    sections = _sections(run)
    width = max(len(label) for label, _, _ in sections) + 2
    failed = False
    for label, model, describe in sections:
        try:
            text = describe(run.result(model))
        except StepNotFinished:
            text = _failed(run, model.step, width + 4) or NOT_RUN
            failed = failed or text != NOT_RUN
        except ResultError as error:  # a result of an older version (or a bug): shown, not fatal to the summary
            text = f"unreadable result: {error}"
        lines.append(f"  {label + ':':<{width}}{text}")
    return "\n".join([*lines, _last_success(run)] if failed else lines)
