"""validate, validate_split: Great Expectations checks of the ingested data and of the split.

``validate`` builds an expectation suite from the spec and the reference profile
(``validation.profile``, see :mod:`mlpipe.profile`) and runs it on the ingested
snapshot: required columns exist, storage types, null fractions, numeric ranges,
categories, the target's values and the positive-class rate. ``validate_split``
checks that every split part keeps the label rate of the whole snapshot.

Both run GX in an ephemeral (in-memory) context, so nothing is written outside
the step's folder, which receives ``validation.json`` (the GX result) and
``report.html`` (the GX Data Docs page of that result). When an expectation
fails both are written, then :class:`StepError` lists every failure, one line
each, and the step has no ``result.json``: nothing downstream can use it.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from mlpipe import storage
from mlpipe.features import labels
from mlpipe.runs import Run
from mlpipe.spec import Spec, Validation
from mlpipe.steps import StepError
from mlpipe.steps.split import PARTS

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.expectations import Expectation

log = logging.getLogger(__name__)

LABEL = "_mlpipe_positive"  # 0/1 label column added to the batch (the positive-rate checks use its mean)
PART = "_mlpipe_part"  # split part name column added to the validate_split batch
_BITS = (8, 16, 32, 64)
# Type names GX's pandas type check understands: numpy dtypes, pandas nullable dtypes, and the Python
# types it compares cell by cell in object columns.
TYPE_LISTS = {
    "numeric": ["int", "float", "float32", "float64", "Float32Dtype", "Float64Dtype",
                *(f"{prefix}{bits}" for prefix in ("int", "uint") for bits in _BITS),
                *(f"{prefix}{bits}Dtype" for prefix in ("Int", "UInt") for bits in _BITS)],
    "string": ["str"],
}
SHOWN_VALUES = 6  # list items shown per value in a failure line


def required_columns(spec: Spec) -> set[str]:
    """Columns the spec names and the snapshot must therefore have."""
    named = {spec.target.column, *spec.id_columns, *spec.features.categorical, *spec.slices,
             *(rule.column for rule in spec.pii if rule.action == "hash")}
    if isinstance(spec.features.include, list):
        named.update(spec.features.include)
    return named


def _expectations() -> Any:
    """``great_expectations.expectations``, imported with GX's logging quieted.

    Importing GX logs hundreds of INFO lines, which would flood the task log.
    """
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations.expectations as gxe

    return gxe


def _mostly(allowed_share: float) -> float:
    return max(0.0, 1.0 - allowed_share)


def column_expectations(name: str, entry: dict[str, Any], validation: Validation,
                        strict: bool = False) -> list[Expectation]:
    """The checks of one profiled column; ``strict`` (the target) allows no nulls nor new values.

    A categorical column is checked as text against its categories, as the model reads it, so it
    gets no storage-type check; every other numeric or string column does.
    """
    gxe = _expectations()
    checks: list[Expectation] = []
    if "categories" not in entry and (type_list := TYPE_LISTS.get(entry["type"])):
        checks.append(gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=type_list))
    null_share = 0.0 if strict else entry["null_fraction"] + validation.max_null_increase
    checks.append(gxe.ExpectColumnValuesToNotBeNull(column=name, mostly=_mostly(null_share)))
    if entry["kind"] == "numeric" and entry.get("min") is not None:
        margin = validation.range_margin * (entry["max"] - entry["min"])
        checks.append(gxe.ExpectColumnValuesToBeBetween(
            column=name, min_value=entry["min"] - margin, max_value=entry["max"] + margin))
    if "categories" in entry:
        new_share = 0.0 if strict else validation.new_category_tolerance
        checks.append(gxe.ExpectColumnValuesToBeInSet(
            column=name, value_set=entry["categories"], mostly=_mostly(new_share)))
    return checks


def positive_rate_check(spec: Spec, low: float, high: float, part: str | None = None) -> Expectation:
    """The mean of the 0/1 label column within [``low``, ``high``]: in one split ``part``, or in all rows."""
    gxe = _expectations()
    from great_expectations.expectations.row_conditions import Column

    rate = f"positive rate ({spec.target.column} == {spec.target.positive_class!r})"
    where = {"row_condition": Column(PART) == part} if part else {}
    return gxe.ExpectColumnMeanToBeBetween(column=LABEL, min_value=low, max_value=high,
                                           meta={"subject": f"{rate} of {part or 'the snapshot'}"}, **where)


def data_suite(spec: Spec, profiled: dict[str, dict[str, Any]]) -> list[Expectation]:
    """The expectations of ``validate``: spec-derived checks plus those of the ``profiled`` columns."""
    gxe = _expectations()
    target = spec.target.column
    checks: list[Expectation] = [gxe.ExpectColumnToExist(column=name)
                                 for name in sorted(required_columns(spec) | set(profiled))]
    for name, entry in sorted(profiled.items()):
        checks += column_expectations(name, entry, spec.validation, strict=name == target)
    if target not in profiled:
        checks.append(gxe.ExpectColumnValuesToNotBeNull(column=target))
    checks.append(positive_rate_check(spec, *spec.validation.positive_rate))
    return checks


def profiled_columns(uri: str | None) -> dict[str, dict[str, Any]]:
    """The column entries of the reference profile at ``uri``; none without a profile."""
    if not uri:
        return {}
    reference = storage.read_json(uri)
    if not isinstance(reference, dict) or not isinstance(reference.get("columns"), dict):
        raise StepError(f"validation.profile {uri}: not an mlpipe profile (no 'columns' mapping); "
                        "make it with `python -m mlpipe profile <spec.yaml>`")
    return reference["columns"]


def batch_frame(frame: pd.DataFrame, text_columns: list[str]) -> pd.DataFrame:
    """The frame GX checks: ``text_columns`` as text, and pandas string columns as ``object``.

    GX 1.x's pandas type check does not know pandas 3's ``str`` dtype, but checks the Python
    type of each cell of an ``object`` column; the values (and missing values) are unchanged.
    """
    import pandas as pd

    view = frame.astype({name: str for name in text_columns if name in frame.columns})
    return view.astype({name: object for name, dtype in view.dtypes.items()
                        if isinstance(dtype, pd.StringDtype)})


def run_suite(name: str, frame: pd.DataFrame, checks: list[Expectation]) -> ExpectationSuiteValidationResult:
    """Validate ``frame`` against ``checks`` in an in-memory GX context."""
    _expectations()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("mlpipe").add_dataframe_asset(name)
             .add_batch_definition_whole_dataframe("whole").get_batch(batch_parameters={"dataframe": frame}))
    return batch.validate(gx.ExpectationSuite(name=name, expectations=checks))


def render_html(result: ExpectationSuiteValidationResult) -> str:
    """The GX Data Docs page of a validation result."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView
    from great_expectations.util import convert_to_json_serializable

    for item in result.results:  # plain Python values: the renderer cannot format numpy 2 scalars
        item.result = json.loads(json.dumps(convert_to_json_serializable(item.result)))
    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        shown = ", ".join(_short(item) for item in value[:SHOWN_VALUES])
        more = f", ... {len(value) - SHOWN_VALUES} more" if len(value) > SHOWN_VALUES else ""
        return f"[{shown}{more}]"
    return repr(value)


def _observed(item: ExpectationValidationResult) -> str:
    found = item.result or {}
    if "observed_value" in found:
        return _short(found["observed_value"])
    if "unexpected_count" in found:
        share = found["unexpected_count"] / max(found.get("element_count") or 0, 1)
        examples = list(dict.fromkeys(found.get("partial_unexpected_list") or []))
        return f"{share:.2%} of rows unexpected, e.g. {_short(examples)}"
    info = item.exception_info or {}
    messages = [info.get("exception_message")] + [v.get("exception_message") for v in info.values()
                                                  if isinstance(v, dict)]
    return "error: " + next((m for m in messages if m), "no observed value")


def describe_failure(item: ExpectationValidationResult) -> str:
    """One line: ``subject: expectation_type (observed ... / expected ...)``."""
    config = item.expectation_config
    kwargs = config.kwargs
    subject = (config.meta or {}).get("subject") or kwargs.get("column", "table")
    if config.type == "expect_column_to_exist":
        return f"{subject}: {config.type} (observed: column missing / expected: column present)"
    expected = ", ".join(f"{key}={_short(value)}" for key, value in sorted(kwargs.items())
                         if key not in ("column", "batch_id", "row_condition"))
    return f"{subject}: {config.type} (observed: {_observed(item)} / expected: {expected})"


def failures(result: ExpectationSuiteValidationResult) -> list[str]:
    """A line per failed expectation; checks on a missing column are summed up by its existence check."""
    failed = [item for item in result.results if not item.success]
    missing = {item.expectation_config.kwargs["column"] for item in failed
               if item.expectation_config.type == "expect_column_to_exist"}
    return sorted(describe_failure(item) for item in failed
                  if item.expectation_config.type == "expect_column_to_exist"
                  or item.expectation_config.kwargs.get("column") not in missing)


def check(run: Run, step: str, frame: pd.DataFrame, checks: list[Expectation]) -> dict[str, Any]:
    """Run ``checks`` on ``frame``, save the result and its report under ``step``, fail on any failure."""
    result = run_suite(f"{run.spec.name}_{step}", frame, checks)
    result_uri = storage.write_json(run.path(step, "validation.json"), result.to_json_dict())
    report_uri = storage.write_bytes(run.path(step, "report.html"), render_html(result).encode())
    evaluated = result.statistics["evaluated_expectations"]
    if not result.success:
        failed = result.statistics["unsuccessful_expectations"]
        raise StepError(f"{step}: {failed} of {evaluated} expectations failed (report: {report_uri}):\n"
                        + "\n".join(failures(result)))
    log.info("%s: all %d expectations passed (report: %s)", step, evaluated, report_uri)
    return {"success": True, "evaluated": evaluated, "failed": 0, "report": report_uri, "result": result_uri}


def validate_data(run: Run) -> dict[str, Any]:
    """Check the ingested snapshot against the spec and the reference profile."""
    spec = run.spec
    ingested = run.result("ingest")
    profiled = profiled_columns(spec.validation.profile)
    snapshot = storage.read_parquet(ingested["snapshot"])
    frame = batch_frame(snapshot, [name for name, entry in profiled.items() if "categories" in entry])
    frame[LABEL] = labels(snapshot, spec)
    summary = check(run, "validate", frame, data_suite(spec, profiled))
    return {**summary, "profile": spec.validation.profile, "data_version": ingested["data_version"]}


def validate_split(run: Run) -> dict[str, Any]:
    """Check that each split part's label rate is within ``split_rate_tolerance`` of the snapshot's."""
    import pandas as pd

    spec = run.spec
    split = run.result("split")
    rate = float(labels(storage.read_parquet(run.result("ingest")["snapshot"]), spec).mean())
    tolerance = spec.validation.split_rate_tolerance
    frame = pd.concat([pd.DataFrame({LABEL: labels(storage.read_parquet(split[part]), spec), PART: part})
                       for part in PARTS], ignore_index=True)
    checks = [positive_rate_check(spec, max(0.0, rate - tolerance), min(1.0, rate + tolerance), part)
              for part in PARTS]
    summary = check(run, "validate_split", batch_frame(frame, []), checks)
    return {**summary, "positive_rate": round(rate, 6)}
