"""validate, validate_split: Great Expectations checks of the ingested data and of the split.

``validate`` builds an expectation suite from the spec and the reference profile
(``validation.profile``, see :mod:`mlpipe.profile`) and runs it on the ingested
snapshot: required columns exist, storage types, null fractions, numeric ranges,
categories, the target's values and the positive-class rate. ``validate_split``
checks that every split part keeps the label rate of the whole snapshot.

Every row is checked, batch by batch: the data is read ``data.batch_rows`` rows at a
time (:mod:`mlpipe.datasets`), the suite runs on each batch, and the per-batch results
are merged into the result one run on the whole data would give (summed counts,
row-weighted means, successes recomputed with GX's rules), so memory holds one batch.

Both run GX in an ephemeral (in-memory) context, so nothing is written outside
the step's folder, which receives ``validation.json`` (the GX result) and
``report.html`` (the GX Data Docs page of that result). When an expectation
fails both are written, then :class:`StepError` lists every failure, one line
each, and the step has no ``result.json``: nothing downstream can use it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from mlpipe import datasets, storage
from mlpipe.features import labels
from mlpipe.profile import read_profile
from mlpipe.runs import Run
from mlpipe.spec import Spec, Validation
from mlpipe.steps import StepError
from mlpipe.steps.split import PARTS

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.expectations import Expectation
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    Weighted = tuple[ExpectationValidationResult, int]  # a result and the rows its mean covers (mean checks)

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
SHOWN_CHARS = 40  # of one value's text in a failure line
PARTIAL_VALUES = 20  # unexpected values a GX result keeps: partial_unexpected_count of its SUMMARY format
MEAN = "expect_column_mean_to_be_between"
TYPE_CHECK = "expect_column_values_to_be_in_type_list"
COLUMN_MAP_TYPES = (TYPE_CHECK, "expect_column_values_to_not_be_null",
                    "expect_column_values_to_be_between", "expect_column_values_to_be_in_set")


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

    values = spec.target.positive_values
    rate = f"positive rate ({spec.target.column} {'==' if len(values) == 1 else 'in'} {spec.target.positive_text})"
    where = {"row_condition": Column(PART) == part} if part else {}
    return gxe.ExpectColumnMeanToBeBetween(column=LABEL, min_value=low, max_value=high,
                                           meta={"subject": f"{rate} of {part or 'the snapshot'}"}, **where)


def data_suite(spec: Spec, profiled: dict[str, dict[str, Any]], reference_rate: float | None = None,
               ) -> list[Expectation]:
    """The expectations of ``validate``: spec-derived checks plus those of the ``profiled`` columns; the
    positive rate within ``validation.positive_rate`` or, unset, around the profile's ``reference_rate``."""
    gxe = _expectations()
    target = spec.target.column
    checks: list[Expectation] = [gxe.ExpectColumnToExist(column=name)
                                 for name in sorted(required_columns(spec) | set(profiled))]
    for name, entry in sorted(profiled.items()):
        checks += column_expectations(name, entry, spec.validation, strict=name == target)
    if target not in profiled:
        checks.append(gxe.ExpectColumnValuesToNotBeNull(column=target))
    checks.append(positive_rate_check(spec, *spec.validation.positive_rate_band(reference_rate)))
    return checks


def profiled_columns(uri: str | None) -> dict[str, dict[str, Any]]:
    """The column entries of the reference profile at ``uri``; none without a profile."""
    return read_profile(uri)["columns"]


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
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}..."


class TextInNumbers:
    """The values that are not numbers in the columns a suite expects numeric, counted over every batch.

    One ``'unknown'`` makes a numeric column text: GX's type check then flags every value of it,
    valid numbers included, and keeps only the first few. A failure line lists these values instead,
    as shown (:func:`_short`), with the rows of each of the first :data:`PARTIAL_VALUES` distinct ones
    in the order they first appear.
    """

    def __init__(self, checks: list[Expectation]) -> None:
        self.columns = [check.column for check in checks if check.expectation_type == TYPE_CHECK
                        and check.type_list == TYPE_LISTS["numeric"]]
        self.rows: Counter[str] = Counter()  # column -> rows holding a value that is not a number
        self.values: dict[str, Counter[str]] = {name: Counter() for name in self.columns}

    def counted(self, frames: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """``frames``, unchanged; the values that are not numbers in those columns are counted on the way."""
        from pandas.api.types import is_numeric_dtype

        for frame in frames:
            for name in self.columns:
                if name in frame.columns and not is_numeric_dtype(frame[name]):
                    self._count(name, frame[name])
            yield frame

    def _count(self, name: str, column: pd.Series) -> None:
        import pandas as pd

        present = column.dropna()
        shown = present[pd.to_numeric(present, errors="coerce").isna()].map(_short)
        self.rows[name] += len(shown)
        counts = self.values[name]
        for value, rows in shown.value_counts(sort=False).items():
            if value in counts or len(counts) < PARTIAL_VALUES:
                counts[value] += rows

    def listed(self, name: str) -> str | None:
        """``['unknown' (3 rows), 'n/a' (1 row), ... 2 more rows]`` of column ``name``; ``None`` when it has none."""
        if not self.rows[name]:
            return None
        first = list(self.values[name].items())[:SHOWN_VALUES]
        shown = [f"{value} ({_rows(rows)})" for value, rows in first]
        if rest := self.rows[name] - sum(rows for _, rows in first):
            shown.append(f"... {_rows(rest, 'more ')}")
        return f"[{', '.join(shown)}]"


def _rows(count: int, which: str = "") -> str:
    return f"{count} {which}row{'s' if count > 1 else ''}"


def _observed(item: ExpectationValidationResult, text: TextInNumbers | None) -> str:
    found = item.result or {}
    if "observed_value" in found:
        return _short(found["observed_value"])
    if "unexpected_count" in found:
        rows, column = max(found.get("element_count") or 0, 1), item.expectation_config.kwargs.get("column")
        if item.expectation_config.type == TYPE_CHECK and text and (listed := text.listed(column)):
            # the values that are not numbers, not every value of a column read as text
            return f"{text.rows[column] / rows:.2%} of rows unexpected, e.g. {listed}"
        examples = list(dict.fromkeys(found.get("partial_unexpected_list") or []))
        return f"{found['unexpected_count'] / rows:.2%} of rows unexpected, e.g. {_short(examples)}"
    return "not evaluated, the check could not run on these values (its error is in validation.json)"


def _expected(key: str, value: Any) -> str:
    """``key=value`` of a check's arguments; a type list of :data:`TYPE_LISTS` by its name."""
    named = next((name for name, types in TYPE_LISTS.items() if key == "type_list" and value == types), None)
    return f"{key}={named or _short(value)}"


def describe_failure(item: ExpectationValidationResult, text: TextInNumbers | None = None) -> str:
    """One line: ``subject: expectation_type (observed ... / expected ...)``.

    ``text`` (counted over the batches checked) lists the values of a numeric column that are not numbers.
    """
    config = item.expectation_config
    kwargs = config.kwargs
    subject = (config.meta or {}).get("subject") or kwargs.get("column", "table")
    if config.type == "expect_column_to_exist":
        return f"{subject}: {config.type} (observed: column missing / expected: column present)"
    expected = ", ".join(_expected(key, value) for key, value in sorted(kwargs.items())
                         if key not in ("column", "batch_id", "row_condition"))
    return f"{subject}: {config.type} (observed: {_observed(item, text)} / expected: {expected})"


def failures(result: ExpectationSuiteValidationResult, text: TextInNumbers | None = None) -> list[str]:
    """A line per failed expectation; checks on a missing column are summed up by its existence check."""
    failed = [item for item in result.results if not item.success]
    missing = {item.expectation_config.kwargs["column"] for item in failed
               if item.expectation_config.type == "expect_column_to_exist"}
    return sorted(describe_failure(item, text) for item in failed
                  if item.expectation_config.type == "expect_column_to_exist"
                  or item.expectation_config.kwargs.get("column") not in missing)


def _key(item: ExpectationValidationResult) -> str:
    """Which expectation ``item`` is a result of: its type and arguments (the batch id left out)."""
    config = item.expectation_config.to_json_dict()
    kwargs = {name: value for name, value in config["kwargs"].items() if name != "batch_id"}
    return json.dumps([config["type"], kwargs], sort_keys=True, default=str)


def _with(item: ExpectationValidationResult, success: bool, found: dict[str, Any]) -> ExpectationValidationResult:
    """``item`` with another ``success`` and ``result``."""
    from great_expectations.core import ExpectationValidationResult

    return ExpectationValidationResult(success=success, expectation_config=item.expectation_config, result=found,
                                       meta=item.meta, exception_info=item.exception_info)


def _percent(count: int, rows: int) -> float | None:
    """``count`` in percent of ``rows``; ``None`` without rows, as GX reports it."""
    return count / rows * 100 if rows else None


def _mostly_met(considered: int, unexpected: int, mostly: float) -> bool:
    """GX's success of a column-map check: vacuous without rows, else the expected share reaches ``mostly``."""
    return considered == 0 or (float(considered) - float(unexpected)) / float(considered) >= mostly


def _partial_counts(values: list[Any]) -> dict[str, Any]:
    """GX's ``partial_unexpected_counts`` of the kept unexpected ``values``: none when they cannot be sorted."""
    from collections import Counter

    try:
        return {"partial_unexpected_counts": [
            {"value": value, "count": count} for value, count in
            sorted(Counter(values).most_common(PARTIAL_VALUES), key=lambda pair: (-pair[1], pair[0]))]}
    except TypeError:
        return {}


def _merge_counts(total: ExpectationValidationResult, item: ExpectationValidationResult) -> ExpectationValidationResult:
    """A column-map check's summed counts, with its percentages and success recomputed as GX computes them.

    Its share of unexpected values is of the non-null rows, except for the not-null check (no
    ``missing_count``), whose unexpected values are the nulls among all rows.
    """
    first, second = total.result, item.result
    rows = first["element_count"] + second["element_count"]
    unexpected = first["unexpected_count"] + second["unexpected_count"]
    found: dict[str, Any] = {"element_count": rows, "unexpected_count": unexpected}
    for name in ("partial_unexpected_list", "partial_unexpected_index_list"):
        if name in first:
            found[name] = (first[name] + second[name])[:PARTIAL_VALUES]
    considered = rows
    if "missing_count" in first:
        missing = first["missing_count"] + second["missing_count"]
        considered = rows - missing
        found.update(missing_count=missing, missing_percent=_percent(missing, rows),
                     unexpected_percent_total=_percent(unexpected, rows),
                     unexpected_percent_nonmissing=_percent(unexpected, considered))
    found["unexpected_percent"] = _percent(unexpected, considered)
    if "partial_unexpected_list" in found:
        found.update(_partial_counts(found["partial_unexpected_list"]))
    mostly = total.expectation_config.kwargs.get("mostly", 1)
    return _with(total, _mostly_met(considered, unexpected, mostly), found)


def _merge_dtypes(total: ExpectationValidationResult, item: ExpectationValidationResult) -> ExpectationValidationResult:
    """A type check GX made on the column's dtype (not on its values): the dtype all the batches make together.

    A numeric column is ``int64`` in batches without nulls and ``float64`` in those with some;
    the whole data is then ``float64``. A column checked by dtype in some batches and value by
    value (``object`` dtype) in others cannot be merged.
    """
    import numpy as np

    column = total.expectation_config.kwargs["column"]
    if "observed_value" not in total.result or "observed_value" not in item.result:
        raise StepError(f"{column}: its type is checked by dtype in some batches and value by value in others "
                        "(object dtype); the batch results cannot be merged")
    names = {total.result["observed_value"], item.result["observed_value"]}
    try:
        observed = names.pop() if len(names) == 1 else np.result_type(*names).type.__name__
    except TypeError:
        raise StepError(f"{column}: its dtypes in different batches, {sorted(names)}, have no common dtype; "
                        "the batch results cannot be merged") from None
    return _with(total, total.success and item.success, {"observed_value": observed})


def _merge_column_map(total: Weighted, batch: Weighted) -> ExpectationValidationResult:
    """A column-map check (types, nulls, range, set) over both: an error (empty result) wins."""
    (merged, _), (item, _) = total, batch
    if not merged.result or not item.result:
        return merged if not merged.result else item
    if "observed_value" in merged.result or "observed_value" in item.result:
        return _merge_dtypes(merged, item)
    return _merge_counts(merged, item)


def _merge_exists(total: Weighted, batch: Weighted) -> ExpectationValidationResult:
    """A column-existence check over both: it fails if it failed in either."""
    (merged, _), (item, _) = total, batch
    return merged if not merged.success or item.success else item


def _within(kwargs: dict[str, Any], value: float) -> bool:
    """GX's test of ``value`` against the optional ``min_value``/``max_value`` (``strict_min``/``strict_max``)."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    above = low is None or (value > low if kwargs.get("strict_min") else value >= low)
    below = high is None or (value < high if kwargs.get("strict_max") else value <= high)
    return bool(above and below)


def _merge_mean(total: Weighted, batch: Weighted) -> ExpectationValidationResult:
    """A column-mean check over both: the mean weighted by the rows each covers, success recomputed.

    A side that covers no rows (its row condition selected none) adds nothing; with no rows on
    either, the result stays GX's (no observed value, failed).
    """
    (merged, rows), (item, more) = total, batch
    if not more or not rows:
        return item if more else merged
    observed = (merged.result["observed_value"] * rows + item.result["observed_value"] * more) / (rows + more)
    return _with(merged, _within(merged.expectation_config.kwargs, observed), {"observed_value": observed})


MERGES = {"expect_column_to_exist": _merge_exists, MEAN: _merge_mean,
          **dict.fromkeys(COLUMN_MAP_TYPES, _merge_column_map)}


def selected_rows(frame: pd.DataFrame, config: ExpectationConfiguration) -> int:
    """The rows a column-mean check averages in ``frame``: non-null values its row condition selects."""
    from great_expectations.execution_engine import PandasExecutionEngine
    from great_expectations.expectations.row_conditions import deserialize_row_condition

    condition = deserialize_row_condition(config.kwargs.get("row_condition"))
    rows = frame.query(PandasExecutionEngine().condition_to_filter_clause(condition)) if condition else frame
    return int(rows[config.kwargs["column"]].notna().sum())


def _weighted(frame: pd.DataFrame, item: ExpectationValidationResult) -> Weighted:
    """``item`` with the rows its mean covers in ``frame``: 0 for other checks and for no observed mean."""
    config = item.expectation_config
    if config.type != MEAN or (item.result or {}).get("observed_value") is None:
        return item, 0
    return item, selected_rows(frame, config)


def _merged(total: dict[str, Weighted], batch: dict[str, Weighted]) -> dict[str, Weighted]:
    """The results of the batches so far (``total``) merged with those of the next ``batch``."""
    return {key: (MERGES[item.expectation_config.type](total[key], (item, rows)), total[key][1] + rows)
            for key, (item, rows) in batch.items()}


def _suite_result(last: ExpectationSuiteValidationResult,
                  items: list[ExpectationValidationResult]) -> ExpectationSuiteValidationResult:
    """The suite result of the merged ``items``: success and statistics as GX computes them."""
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.validator.validation_statistics import calc_validation_statistics

    statistics = calc_validation_statistics(items)
    return ExpectationSuiteValidationResult(
        success=statistics.success, results=items, suite_name=last.suite_name, meta=last.meta,
        batch_id=last.batch_id, statistics={
            name: getattr(statistics, name) for name in ("evaluated_expectations", "successful_expectations",
                                                         "unsuccessful_expectations", "success_percent")})


def run_batches(name: str, frames: Iterable[pd.DataFrame],
                checks: list[Expectation]) -> ExpectationSuiteValidationResult:
    """Run ``checks`` on each of ``frames``; merge the results into those of one run on all their rows.

    The frames are numbered on from one another, so the row numbers GX reports are the whole data's.
    """
    import pandas as pd

    if unknown := {check.expectation_type for check in checks} - MERGES.keys():
        raise StepError(f"{name}: the batch results of {', '.join(sorted(unknown))} cannot be merged")
    total: dict[str, Weighted] | None = None
    result, start = None, 0
    for frame in frames:
        numbered = frame.set_axis(pd.RangeIndex(start, start + len(frame)))
        start += len(frame)
        result = run_suite(name, numbered, checks)
        batch = {_key(item): _weighted(numbered, item) for item in result.results}
        if len(batch) < len(result.results):
            raise StepError(f"{name}: an expectation is in the suite twice; its batch results cannot be merged")
        total = batch if total is None else _merged(total, batch)
    if total is None:
        raise StepError(f"{name}: no rows to validate")
    return _suite_result(result, [item for item, _ in total.values()])


def check(run: Run, step: str, frames: Iterable[pd.DataFrame], checks: list[Expectation]) -> dict[str, Any]:
    """Run ``checks`` on ``frames`` (the data's batches), save the merged result and report, fail on any failure."""
    text = TextInNumbers(checks)
    result = run_batches(f"{run.spec.name}_{step}", text.counted(frames), checks)
    result_uri = storage.write_json(run.path(step, "validation.json"), result.to_json_dict())
    report_uri = storage.write_bytes(run.path(step, "report.html"), render_html(result).encode())
    evaluated = result.statistics["evaluated_expectations"]
    if not result.success:
        failed = result.statistics["unsuccessful_expectations"]
        raise StepError(f"{step}: {failed} of {evaluated} expectations failed (report: {report_uri}):\n"
                        + "\n".join(failures(result, text)))
    log.info("%s: all %d expectations passed (report: %s)", step, evaluated, report_uri)
    return {"success": True, "evaluated": evaluated, "failed": 0, "report": report_uri, "result": result_uri}


def snapshot_batches(run: Run, profiled: dict[str, dict[str, Any]]) -> Iterator[pd.DataFrame]:
    """The ingested snapshot as GX checks it (:func:`batch_frame` plus the 0/1 label), a batch at a time."""
    spec = run.spec
    text = [name for name, entry in profiled.items() if "categories" in entry]
    for snapshot in datasets.batches(run.result("ingest")["snapshot"], spec.data.batch_rows):
        frame = batch_frame(snapshot, text)
        frame[LABEL] = labels(snapshot, spec)
        yield frame


def validate_data(run: Run) -> dict[str, Any]:
    """Check every row of the ingested snapshot against the spec and the reference profile."""
    spec = run.spec
    reference = read_profile(spec.validation.profile, spec.name)
    profiled, rate = reference["columns"], reference.get("target", {}).get("positive_rate")
    summary = check(run, "validate", snapshot_batches(run, profiled), data_suite(spec, profiled, rate))
    return {**summary, "profile": spec.validation.profile, "data_version": run.result("ingest")["data_version"]}


def target_batches(run: Run, uri: str) -> Iterator[pd.DataFrame]:
    """The target column of the dataset at ``uri``, a batch at a time."""
    yield from datasets.batches(uri, run.spec.data.batch_rows, columns=[run.spec.target.column])


def positive_rate(run: Run) -> float:
    """The snapshot's share of positive labels, reading only its target column."""
    positives = rows = 0
    for frame in target_batches(run, run.result("ingest")["snapshot"]):
        positives += int(labels(frame, run.spec).sum())
        rows += len(frame)
    return positives / rows


def part_batches(run: Run) -> Iterator[pd.DataFrame]:
    """The 0/1 labels of each split part, with the part's name, a batch at a time."""
    import pandas as pd

    split = run.result("split")
    for part in PARTS:
        for frame in target_batches(run, split[part]):
            yield batch_frame(pd.DataFrame({LABEL: labels(frame, run.spec), PART: part}), [])


def validate_split(run: Run) -> dict[str, Any]:
    """Check that each split part's label rate is within ``split_rate_tolerance`` of the snapshot's."""
    spec = run.spec
    rate = positive_rate(run)
    tolerance = spec.validation.split_rate_tolerance
    checks = [positive_rate_check(spec, max(0.0, rate - tolerance), min(1.0, rate + tolerance), part)
              for part in PARTS]
    summary = check(run, "validate_split", part_batches(run), checks)
    return {**summary, "positive_rate": round(rate, 6)}
