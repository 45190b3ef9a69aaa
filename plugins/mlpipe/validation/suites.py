"""Expectation suites from a spec and its reference profile, and running one on a batch (GX ephemeral context)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from mlpipe.core.spec import Spec, Validation
from mlpipe.core.tasks import Task
from mlpipe.data.features import labels
from mlpipe.data.profile import read_profile

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.expectations import Expectation


LABEL = "_mlpipe_positive"  # the target's column(s) added to the batch, whose means are checked (target_columns)
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


def expectations() -> Any:
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
    gxe = expectations()
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


def target_columns(spec: Spec, classes: list[str]) -> dict[str, str]:
    """The columns :func:`with_target_columns` adds, each with what its mean is: binary, the positive rate
    (:data:`LABEL`: 1 for the positive class); multiclass, each class's share of the rows; regression, the
    target's mean."""
    target = spec.target
    if target.task == Task.BINARY:
        values = target.positive_values
        return {LABEL: f"positive rate ({target.column} {'==' if len(values) == 1 else 'in'} {target.positive_text})"}
    if target.task == Task.MULTICLASS:
        return {f"{LABEL}_{index}": f"share of class {name!r} ({target.column})" for index, name in enumerate(classes)}
    return {LABEL: f"mean of {target.column}"}


def with_target_columns(frame: pd.DataFrame, target: pd.DataFrame, spec: Spec, classes: list[str]) -> pd.DataFrame:
    """``frame`` with the :func:`target_columns` of the rows of ``target`` (their target column)."""
    column = target[spec.target.column]
    if spec.target.task == Task.MULTICLASS:
        text = column.astype(str).to_numpy()
        for index, name in enumerate(classes):
            frame[f"{LABEL}_{index}"] = (text == name).astype("int8")
    else:
        frame[LABEL] = labels(target, spec)
    return frame


def mean_check(column: str, subject: str, low: float, high: float, part: str | None = None) -> Expectation:
    """The mean of ``column`` (a :func:`target_columns` column, ``subject`` says what it is) within
    [``low``, ``high``]: in one split ``part``, or in all rows."""
    gxe = expectations()
    from great_expectations.expectations.row_conditions import Column

    where = {"row_condition": Column(PART) == part} if part else {}
    return gxe.ExpectColumnMeanToBeBetween(column=column, min_value=low, max_value=high,
                                           meta={"subject": f"{subject} of {part or 'the snapshot'}"}, **where)


def profiled_classes(spec: Spec, target: dict[str, Any]) -> list[str]:
    """A multiclass target's classes, as the profile's ``target`` entry has them (``target.classes`` first)."""
    if spec.target.classes is not None:
        return [str(name) for name in spec.target.classes]
    return sorted(target.get("class_shares", {}))


def target_checks(spec: Spec, target: dict[str, Any]) -> list[Expectation]:
    """The checks of the target's rates in all rows against the profile's ``target`` entry: binary, the positive
    rate within ``validation.positive_rate`` or, unset, around the profile's rate; multiclass, each class's share
    around the profile's (half to one and a half times); regression, none (its column's range and nulls are checked
    as the profile's)."""
    columns = target_columns(spec, profiled_classes(spec, target))
    if spec.target.task == Task.BINARY:
        return [mean_check(LABEL, columns[LABEL], *spec.validation.positive_rate_band(target.get("positive_rate")))]
    if spec.target.task == Task.MULTICLASS:
        shares = target.get("class_shares", {})
        return [mean_check(column, subject, *spec.validation.positive_rate_band(shares[name]))
                for (column, subject), name in zip(columns.items(), profiled_classes(spec, target), strict=True)]
    return []


def data_suite(spec: Spec, profiled: dict[str, dict[str, Any]], target: dict[str, Any] | None = None,
               ) -> list[Expectation]:
    """The expectations of ``validate``: spec-derived checks plus those of the ``profiled`` columns, and the
    target's rates (:func:`target_checks` of the profile's ``target`` entry)."""
    gxe = expectations()
    column = spec.target.column
    checks: list[Expectation] = [gxe.ExpectColumnToExist(column=name)
                                 for name in sorted(required_columns(spec) | set(profiled))]
    for name, entry in sorted(profiled.items()):
        checks += column_expectations(name, entry, spec.validation, strict=name == column)
    if column not in profiled:
        checks.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
    return checks + target_checks(spec, target or {})


def profiled_columns(uri: str | None) -> dict[str, dict[str, Any]]:
    """The column entries of the reference profile at ``uri``; none without a profile."""
    return read_profile(uri)["columns"]


def batch_frame(frame: pd.DataFrame, text_columns: list[str]) -> pd.DataFrame:
    """The frame a suite checks: ``text_columns`` as text, as the model reads them; the values are unchanged."""
    return frame.astype({name: str for name in text_columns if name in frame.columns})


def gx_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its pandas string columns as ``object``, which GX 1.x's pandas type check understands.

    It does not know pandas 3's ``str`` dtype, but checks the Python type of each cell of an ``object``
    column; the values (and missing values) are unchanged.
    """
    import pandas as pd

    return frame.astype({name: object for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.StringDtype)})


def run_suite(name: str, frame: pd.DataFrame, checks: list[Expectation]) -> ExpectationSuiteValidationResult:
    """Validate ``frame`` (as :func:`gx_frame`) against ``checks`` in an in-memory GX context."""
    expectations()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("mlpipe").add_dataframe_asset(name)
             .add_batch_definition_whole_dataframe("whole").get_batch(batch_parameters={"dataframe": gx_frame(frame)}))
    return batch.validate(gx.ExpectationSuite(name=name, expectations=checks))


def render_html(result: ExpectationSuiteValidationResult) -> str:
    """The GX Data Docs page of a validation result."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView
    from great_expectations.util import convert_to_json_serializable

    for item in result.results:  # plain Python values: the renderer cannot format numpy 2 scalars
        item.result = json.loads(json.dumps(convert_to_json_serializable(item.result)))
    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
