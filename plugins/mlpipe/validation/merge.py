"""One suite over many batches, with the result one GX run on the whole data would give (summed counts,
row-weighted means, successes recomputed with GX's rules), memory holding one batch, and GX run only on the
rows where its verdict can differ from "expected" (:class:`BatchRun`)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mlpipe.core.errors import Refused
from mlpipe.validation.suites import COLUMN_MAP_TYPES, MEAN, PARTIAL_VALUES, TYPE_CHECK, run_suite

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.expectations import Expectation
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    Weighted = tuple[ExpectationValidationResult, int]  # a result and the rows its mean covers (mean checks)


def _key(config: ExpectationConfiguration) -> str:
    """Which expectation ``config`` configures: its type and arguments (the batch id left out)."""
    found = config.to_json_dict()
    kwargs = {name: value for name, value in found["kwargs"].items() if name != "batch_id"}
    return json.dumps([found["type"], kwargs], sort_keys=True, default=str)


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


def _within(kwargs: dict[str, Any], value: Any) -> Any:
    """GX's test of ``value`` (a number, or a column: element-wise) against the optional ``min_value``/``max_value``
    (``strict_min``/``strict_max``)."""
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    above = True if low is None else (value > low if kwargs.get("strict_min") else value >= low)
    below = True if high is None else (value < high if kwargs.get("strict_max") else value <= high)
    return above & below


def _merge_mean(total: Weighted, batch: Weighted) -> ExpectationValidationResult:
    """A column-mean check over both: the mean weighted by the rows each covers, success recomputed.

    A side that covers no rows (its row condition selected none) adds nothing; with no rows on
    either, the result stays GX's (no observed value, failed).
    """
    (merged, rows), (item, more) = total, batch
    if not more or not rows:
        return item if more else merged
    observed = (merged.result["observed_value"] * rows + item.result["observed_value"] * more) / (rows + more)
    return _with(merged, bool(_within(merged.expectation_config.kwargs, observed)), {"observed_value": observed})


MERGES = {"expect_column_to_exist": _merge_exists, MEAN: _merge_mean,
          **dict.fromkeys(COLUMN_MAP_TYPES, _merge_column_map)}


def _weighted(frame: pd.DataFrame, item: ExpectationValidationResult, clauses: dict[str, str | None]) -> Weighted:
    """``item`` with the rows its mean covers in ``frame``: 0 for other checks and for no observed mean."""
    config = item.expectation_config
    if config.type != MEAN or (item.result or {}).get("observed_value") is None:
        return item, 0
    return item, len(_averaged(frame, config, clauses[_key(config)]))


def _merged(total: dict[str, Weighted], batch: dict[str, Weighted]) -> dict[str, Weighted]:
    """The results of the batches so far (``total``) merged with those of the next ``batch``."""
    return {key: (MERGES[item.expectation_config.type](total[key], (item, rows)), total[key][1] + rows)
            for key, (item, rows) in batch.items()}


def _filter_clause(config: ExpectationConfiguration) -> str | None:
    """The pandas query GX selects a check's rows with (its ``row_condition``); ``None`` without one."""
    from great_expectations.execution_engine import PandasExecutionEngine
    from great_expectations.expectations.row_conditions import deserialize_row_condition

    condition = deserialize_row_condition(config.kwargs.get("row_condition"))
    return PandasExecutionEngine().condition_to_filter_clause(condition) if condition else None


def _averaged(frame: pd.DataFrame, config: ExpectationConfiguration, clause: str | None,
              rows: np.ndarray | None = None) -> pd.Series:
    """The values a column-mean check averages in ``frame`` (of its ``rows`` only, when given): the non-null
    values of the rows its row condition (``clause``) selects."""
    import numpy as np

    values = frame[config.kwargs["column"]]
    chosen = rows if rows is not None else np.ones(len(frame), dtype=bool)
    if clause:
        chosen = chosen & frame.eval(clause).to_numpy(dtype=bool)
    return values[chosen].dropna()


def _holds(config: ExpectationConfiguration, values: pd.Series) -> tuple[np.ndarray, bool]:
    """Which non-null ``values`` meet column-map check ``config``, and whether that is GX's verdict on them all.

    GX's verdict where the test is GX's own pandas test (``isin``, ``>=``/``<=`` on a numeric dtype); a type
    check is GX's only on an ``object`` column, value by value (text cells: as ``object``, each a ``str``).
    Elsewhere none are vouched for.
    """
    import numpy as np
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    kwargs = config.kwargs
    if config.type == "expect_column_values_to_be_in_set":
        return values.isin(kwargs["value_set"]).to_numpy(dtype=bool), True
    if config.type == "expect_column_values_to_be_between" and is_numeric_dtype(values) and not is_bool_dtype(values):
        return _within(kwargs, values).to_numpy(dtype=bool, na_value=False), True
    if config.type == TYPE_CHECK and values.dtype != object:
        text = isinstance(values.dtype, pd.StringDtype)
        return np.full(len(values), not text or "str" in kwargs["type_list"]), True
    return np.zeros(len(values), dtype=bool), False


def _verdicts(frame: pd.DataFrame, config: ExpectationConfiguration,
              nulls: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``frame`` that GX surely finds expected by ``config``, and those it surely finds unexpected.

    All expected for a check that judges no row (existence, mean) or a column ``frame`` lacks (GX's result is
    its error whatever the rows); for a column-map check, the missing rows (``nulls`` of its column) are
    expected, except by the not-null check, for which they are the unexpected ones, and :func:`_holds`
    judges the others.
    """
    import numpy as np

    column = config.kwargs.get("column")
    if config.type not in COLUMN_MAP_TYPES or column not in nulls:
        return np.ones(len(frame), dtype=bool), np.zeros(len(frame), dtype=bool)
    if config.type == "expect_column_values_to_not_be_null":
        return ~nulls[column], nulls[column]
    if config.kwargs.get("row_condition"):
        return np.zeros(len(frame), dtype=bool), np.zeros(len(frame), dtype=bool)
    holds, sure = _holds(config, frame[column])
    return nulls[column] | holds, ~nulls[column] & ~holds & sure


class BatchRun:
    """One suite run over many batches, merged into the result one GX run on all their rows would give.

    GX runs on the rows whose verdict it alone can give (:func:`_verdicts`) and can still change the merged
    result (:meth:`_settled`): those no check surely finds expected, or surely unexpected once GX has kept
    the first unexpected values of that check (its partial lists are full); and on the first row of each
    batch whose columns and dtypes are new (existence and dtype checks, GX's per dtype). The other rows add
    their rows, nulls and unexpected values to the counts of the column-map checks and their values to the
    means. So a batch like those before it costs a few vectorized tests, not a GX run (~1 s of fixed cost,
    whatever its rows), and the unexpected values and row numbers GX reports are the first of the whole data.
    """

    def __init__(self, name: str, checks: list[Expectation]) -> None:
        if unknown := {check.expectation_type for check in checks} - MERGES.keys():
            raise Refused(f"{name}: the batch results of {', '.join(sorted(unknown))} cannot be merged")
        self.name, self.checks = name, checks
        self.configs = {_key(check.configuration): check.configuration for check in checks}
        if len(self.configs) < len(checks):
            raise Refused(f"{name}: an expectation is in the suite twice; its batch results cannot be merged")
        self.columns = {config.kwargs["column"] for config in self.configs.values() if "column" in config.kwargs}
        self.clauses = {key: _filter_clause(config) for key, config in self.configs.items() if config.type == MEAN}
        self.dtypes: set[tuple[tuple[str, str], ...]] = set()  # the columns and dtypes of batches GX has seen
        self.rows = 0  # rows so far, numbered on from one batch to the next
        self.vouched = 0  # of them, rows no GX run checked
        self.missing: Counter[str] = Counter()  # among those, each column-map check's nulls
        self.unexpected: Counter[str] = Counter()  # and its unexpected values
        self.sums: dict[str, tuple[float, int]] = dict.fromkeys(self.clauses, (0.0, 0))  # and each mean's sum, rows
        self.total: dict[str, Weighted] | None = None  # GX's results so far, merged
        self.last: ExpectationSuiteValidationResult | None = None

    def add(self, frame: pd.DataFrame) -> ExpectationSuiteValidationResult | None:
        """Check the next batch; GX's result on the rows it checked, or ``None`` when it checked none."""
        import numpy as np
        import pandas as pd

        numbered = frame.set_axis(pd.RangeIndex(self.rows, self.rows + len(frame)))
        self.rows += len(frame)
        nulls = {name: numbered[name].isna().to_numpy() for name in self.columns if name in numbered.columns}
        verdicts = {key: _verdicts(numbered, config, nulls) for key, config in self.configs.items()}
        vouched = np.ones(len(frame), dtype=bool)
        for key, (expected, unexpected) in verdicts.items():
            vouched &= self._settled(key, expected, unexpected)
        dtypes = tuple((name, str(dtype)) for name, dtype in numbered.dtypes.items())
        if new := dtypes not in self.dtypes:
            self.dtypes.add(dtypes)
            vouched[:1] = False
        self._vouch(numbered, vouched, nulls, verdicts)
        if vouched.all() and not new:
            return None
        checked = numbered[~vouched]
        result = run_suite(self.name, checked, self.checks)
        batch = {_key(item.expectation_config): _weighted(checked, item, self.clauses) for item in result.results}
        self.total = batch if self.total is None else _merged(self.total, batch)
        self.last = result
        return result

    def _settled(self, key: str, expected: np.ndarray, unexpected: np.ndarray) -> np.ndarray | bool:
        """The rows GX's verdict by check ``key`` cannot change its merged result for: the ``expected`` ones, and the
        ``unexpected`` ones once GX has kept as many unexpected values as it keeps; all once the result is an error
        (it stays one)."""
        item = self.total[key][0] if self.total else None
        if item is not None and not item.result:  # GX's error, as the merge sees one (:func:`_merge_column_map`)
            return True
        kept = item is not None and len(item.result.get("partial_unexpected_list") or []) >= PARTIAL_VALUES
        return expected | unexpected if kept else expected

    def _vouch(self, frame: pd.DataFrame, vouched: np.ndarray, nulls: dict[str, np.ndarray],
               verdicts: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Count the ``vouched`` rows of ``frame`` in: rows, ``nulls`` and unexpected values of the column-map
        checks (``verdicts``), the means' sums."""
        self.vouched += int(vouched.sum())
        for key, config in self.configs.items():
            column = config.kwargs.get("column")
            if column not in nulls:
                continue
            if config.type == MEAN:
                values = _averaged(frame, config, self.clauses[key], vouched)
                total, rows = self.sums[key]
                self.sums[key] = (total + float(values.sum()), rows + len(values))
            elif config.type in COLUMN_MAP_TYPES:
                self.missing[key] += int(nulls[column][vouched].sum())
                self.unexpected[key] += int(verdicts[key][1][vouched].sum())

    def _with_vouched(self, key: str, item: ExpectationValidationResult, rows: int) -> ExpectationValidationResult:
        """GX's merged ``item`` with the rows no GX run checked added, as GX would have counted them."""
        found = item.result or {}
        if item.expectation_config.type == MEAN:
            total, more = self.sums[key]
            if not more:
                return item
            observed = total / more
            vouched = _with(item, bool(_within(item.expectation_config.kwargs, observed)), {"observed_value": observed})
            return _merge_mean((item, rows), (vouched, more))
        if "unexpected_count" not in found or not self.vouched:  # not counted row by row: its dtype, or its error
            return item
        counts = {name: [] for name in ("partial_unexpected_list", "partial_unexpected_index_list") if name in found}
        counts.update(element_count=self.vouched, unexpected_count=self.unexpected[key])
        if "missing_count" in found:
            counts["missing_count"] = self.missing[key]
        return _merge_counts(item, _with(item, True, counts))

    def unexpected_counts(self) -> list[tuple[ExpectationConfiguration, int]]:
        """Each column-map check of the batches so far with its unexpected values, where it has some."""
        found = [(item.expectation_config, (item.result or {}).get("unexpected_count", 0) + self.unexpected[key])
                 for key, (item, _) in (self.total or {}).items()]
        return [(config, count) for config, count in found if count]

    def result(self) -> ExpectationSuiteValidationResult:
        """The suite result of all the batches so far."""
        if self.total is None:
            raise Refused(f"{self.name}: no rows to validate")
        return _suite_result(self.last, [self._with_vouched(key, item, rows)
                                         for key, (item, rows) in self.total.items()])


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
    """Run ``checks`` on each of ``frames`` (:class:`BatchRun`); the result of one GX run on all their rows.

    The frames are numbered on from one another, so the row numbers GX reports are the whole data's.
    """
    run = BatchRun(name, checks)
    for frame in frames:
        run.add(frame)
    return run.result()
