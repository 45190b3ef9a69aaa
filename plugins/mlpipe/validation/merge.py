"""One suite over many batches: per-batch GX results merged into the result one run on the whole data would give
(summed counts, row-weighted means, successes recomputed with GX's rules), so memory holds one batch."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mlpipe.core.errors import Refused
from mlpipe.validation.suites import COLUMN_MAP_TYPES, MEAN, PARTIAL_VALUES, run_suite

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.expectations import Expectation
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    Weighted = tuple[ExpectationValidationResult, int]  # a result and the rows its mean covers (mean checks)

log = logging.getLogger(__name__)


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
        raise Refused(f"{column}: its type is checked by dtype in some batches and value by value in others "
                        "(object dtype); the batch results cannot be merged")
    names = {total.result["observed_value"], item.result["observed_value"]}
    try:
        observed = names.pop() if len(names) == 1 else np.result_type(*names).type.__name__
    except TypeError:
        raise Refused(f"{column}: its dtypes in different batches, {sorted(names)}, have no common dtype; "
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
        raise Refused(f"{name}: the batch results of {', '.join(sorted(unknown))} cannot be merged")
    total: dict[str, Weighted] | None = None
    result, start = None, 0
    for frame in frames:
        numbered = frame.set_axis(pd.RangeIndex(start, start + len(frame)))
        start += len(frame)
        result = run_suite(name, numbered, checks)
        batch = {_key(item): _weighted(numbered, item) for item in result.results}
        if len(batch) < len(result.results):
            raise Refused(f"{name}: an expectation is in the suite twice; its batch results cannot be merged")
        total = batch if total is None else _merged(total, batch)
    if total is None:
        raise Refused(f"{name}: no rows to validate")
    return _suite_result(result, [item for item, _ in total.values()])
