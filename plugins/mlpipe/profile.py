"""The reference profile of a pipeline's data: what a healthy extract looks like.

``python -m mlpipe profile <spec.yaml>`` reads the spec's data source, masks PII
exactly as ``ingest`` does, and writes one JSON document (sorted keys, reviewed
and committed like code) that the ``validate`` step turns into expectations::

    {"version": 1, "rows": 9857,
     "target": {"column": "Class", "positive_class": "bad", "positive_rate": 0.052450},
     "columns": {"int_rate": {"kind": "numeric", "type": "numeric", "null_fraction": 0.0,
                              "min": 5.32, "max": 26.77},
                 "term": {"kind": "categorical", "type": "string", "null_fraction": 0.0,
                          "categories": ["term_36", "term_60"]},
                 "addr_state": {"kind": "categorical", "type": "string", "null_fraction": 0.0,
                                "pii": "hash"}, ...}}

``kind`` says which checks apply (numeric: a value range; categorical: a set of
categories, compared as text like the model does; other: none), ``type`` is the
storage type family (numeric / string / other). Hashed PII columns keep only
their type and null fraction: their values depend on the secret key, and the
profile must hold no PII.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlpipe import storage
from mlpipe.features import labels
from mlpipe.spec import Spec, SpecError

if TYPE_CHECKING:
    import pandas as pd

VERSION = 1
DIGITS = 6


def type_family(series: pd.Series) -> str:
    """``numeric``, ``string`` or ``other``: the storage type a column must keep."""
    from pandas.api import types

    if types.is_bool_dtype(series):
        return "other"
    if types.is_numeric_dtype(series):
        return "numeric"
    return "string" if types.is_string_dtype(series) else "other"


def _native(value: Any) -> Any:
    """A numpy scalar as a JSON-friendly Python value; NaN becomes None."""
    value = value.item() if hasattr(value, "item") else value
    return None if value != value else value


def column_profile(series: pd.Series, kind: str, hashed: bool) -> dict[str, Any]:
    """The reference facts of one column; a hashed column gets only its type and null fraction."""
    entry: dict[str, Any] = {"kind": kind, "type": type_family(series),
                             "null_fraction": round(float(series.isna().mean()), DIGITS)}
    if hashed:
        entry["pii"] = "hash"
    elif kind == "numeric":
        entry["min"], entry["max"] = _native(series.min()), _native(series.max())
    elif kind == "categorical":
        entry["categories"] = sorted(series.dropna().astype(str).unique().tolist())
    return entry


def column_kind(name: str, series: pd.Series, spec: Spec) -> str:
    """Which checks a column gets: categorical (spec or target), numeric (not an id), else other."""
    if name == spec.target.column or name in spec.features.categorical:
        return "categorical"
    if type_family(series) == "numeric" and name not in spec.id_columns:
        return "numeric"
    return "other"


def profile(frame: pd.DataFrame, spec: Spec) -> dict[str, Any]:
    """The reference profile of an ingested (PII-masked) frame; see the module docstring."""
    from mlpipe.steps import StepError

    target = spec.target.column
    if target not in frame.columns:
        raise StepError(f"target column {target!r} (target.column) is not in the data")
    hashed = {rule.column for rule in spec.pii if rule.action == "hash"}
    columns = {str(name): column_profile(frame[name], column_kind(name, frame[name], spec), name in hashed)
               for name in frame.columns}
    rate = round(float(labels(frame, spec).mean()), DIGITS)
    return {"version": VERSION, "rows": len(frame), "columns": columns,
            "target": {"column": target, "positive_class": spec.target.positive_class, "positive_rate": rate}}


def write_profile(spec: Spec, output: str | None = None) -> str:
    """Profile the spec's data source and write it to ``output`` or ``validation.profile``; return the URI."""
    from mlpipe import datasets
    from mlpipe.pii import mask_pii

    destination = output or spec.validation.profile
    if not destination:
        raise SpecError(f"{spec.name}: validation.profile is not set; give an output URI (--output)")
    frame = datasets.read(spec.data.source, fmt=spec.data.format)
    mask_pii(frame, spec.pii)
    return storage.write_json(storage.normalize(destination), profile(frame, spec))
