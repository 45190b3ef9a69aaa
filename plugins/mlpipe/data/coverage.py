"""What a dataset covers: its target over every row and the span of its date and time columns.

The model card (:mod:`mlpipe.registry.model_card`) says this of a model's training data. The target is
described as the reference profile describes it (:func:`mlpipe.data.profile.target_profile`: binary, the
positive rate; multiclass, each class's share; regression, the mean), batch by batch and combined, so every
row counts and memory holds one batch. A date or time column is one the data stores as a date or a timestamp
(a CSV column of ISO dates is read as one); the span of each is its earliest and latest value. Only the
target and those columns are read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mlpipe.core.errors import Refused
from mlpipe.data import datasets
from mlpipe.data.profile import combined, target_profile

if TYPE_CHECKING:
    import pyarrow as pa

    from mlpipe.core.spec import Spec


@dataclass(frozen=True)
class Coverage:
    """``rows`` of a dataset; ``target``, its target's facts over them (:func:`~mlpipe.data.profile.target_profile`);
    ``dates``, each date or time column's earliest and latest value (ISO text; ``None``
    when the column holds no value)."""

    rows: int
    target: dict[str, Any]
    dates: dict[str, tuple[str | None, str | None]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, found: dict[str, Any]) -> Coverage:
        """The coverage :meth:`to_json` wrote."""
        return cls(found["rows"], found["target"], {name: tuple(span) for name, span in found["dates"].items()})


def date_columns(schema: pa.Schema) -> list[str]:
    """The columns of ``schema`` stored as dates or timestamps."""
    import pyarrow as pa

    return [field.name for field in schema if pa.types.is_date(field.type) or pa.types.is_timestamp(field.type)]


def _span(spans: list[tuple[Any, Any]]) -> tuple[str | None, str | None]:
    """The earliest and latest of the batches' ``(min, max)`` spans, as ISO text (``None`` when all are empty)."""
    lows = [low for low, _ in spans if low is not None]
    highs = [high for _, high in spans if high is not None]
    return (min(lows).isoformat() if lows else None, max(highs).isoformat() if highs else None)


def coverage(uri: str, spec: Spec) -> Coverage:
    """The :class:`Coverage` of the dataset at ``uri`` (an ingested snapshot), read ``data.batch_rows`` rows at a
    time."""
    import pyarrow.compute as pc

    target = spec.target.column
    first = next(datasets.tables(uri, rows=1), None)
    if first is None:
        raise Refused(f"{uri}: the dataset has no rows")
    dates = [name for name in date_columns(first.schema) if name != target]
    found: dict[str, Any] = {}
    spans: dict[str, list[tuple[Any, Any]]] = {name: [] for name in dates}
    for table in datasets.tables(uri, spec.data.batch_rows, columns=[target, *dates]):
        batch = {"rows": table.num_rows, "columns": {}, "target": target_profile(table.select([target]).to_pandas(),
                                                                                 spec)}
        found = combined(found, batch) if found else batch
        for name in dates:
            extremes = pc.min_max(table[name])
            spans[name].append((extremes["min"].as_py(), extremes["max"].as_py()))
    return Coverage(found["rows"], found["target"], {name: _span(values) for name, values in spans.items()})
