"""What a user reads when a check fails: one line per failed expectation, values and row counts, no GX internals."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from mlpipe.validation.suites import PARTIAL_VALUES, TYPE_CHECK, TYPE_LISTS

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.expectations import Expectation


SHOWN_VALUES = 6  # list items shown per value in a failure line
SHOWN_CHARS = 40  # of one value's text in a failure line


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
