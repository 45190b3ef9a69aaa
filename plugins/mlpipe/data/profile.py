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

import logging
from typing import TYPE_CHECKING, Any

from mlpipe.core import uris
from mlpipe.core.errors import Refused
from mlpipe.core.spec import Spec, SpecError
from mlpipe.core.tasks import Task
from mlpipe.data import datasets
from mlpipe.data.columns import check_named, feature_kinds, reason_warnings
from mlpipe.data.features import count_levels, labels
from mlpipe.data.pii import mask_pii
from mlpipe.store import storage

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
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
    entry: dict[str, Any] = {"kind": kind, "type": type_family(series), "null_fraction": float(series.isna().mean())}
    if hashed:
        entry["pii"] = "hash"
    elif kind == "numeric":
        entry["min"], entry["max"] = _native(series.min()), _native(series.max())
    elif kind == "categorical":
        entry["categories"] = sorted(series.dropna().astype(str).unique().tolist())
    return entry


def _extreme(pick, first: Any, second: Any) -> Any:
    """``pick`` (min or max) of two values of which either may be ``None`` (a batch of missing values)."""
    values = [value for value in (first, second) if value is not None]
    return pick(values) if values else None


def combined(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The (unrounded) profile of two batches' rows, from the profiles of each batch."""
    rows = first["rows"] + second["rows"]

    def weighted(a: float, b: float) -> float:
        return (a * first["rows"] + b * second["rows"]) / rows

    columns = {}
    for name, entry in first["columns"].items():
        other = second["columns"][name]
        entry = {**entry, "null_fraction": weighted(entry["null_fraction"], other["null_fraction"])}
        if "min" in entry:
            entry["min"], entry["max"] = _extreme(min, entry["min"], other["min"]), _extreme(max, entry["max"],
                                                                                             other["max"])
        if "categories" in entry:
            entry["categories"] = sorted({*entry["categories"], *other["categories"]})
        columns[name] = entry
    target = {**first["target"]}
    for key in SHARES & target.keys():  # a fraction of the rows
        target[key] = weighted(first["target"][key], second["target"][key])
    if "class_shares" in target:
        shares = [first["target"]["class_shares"], second["target"]["class_shares"]]
        target["class_shares"] = {name: weighted(shares[0].get(name, 0.0), shares[1].get(name, 0.0))
                                  for name in sorted({*shares[0], *shares[1]})}
    return {**first, "rows": rows, "columns": columns, "target": target}


SHARES = {"positive_rate", "mean"}  # the target facts that are means over the rows


def rounded(reference: dict[str, Any]) -> dict[str, Any]:
    """``reference`` with its fractions rounded to :data:`DIGITS` digits, as it is written."""
    columns = {name: {**entry, "null_fraction": round(entry["null_fraction"], DIGITS)}
               for name, entry in reference["columns"].items()}
    target = {key: round(value, DIGITS) if key in SHARES else value for key, value in reference["target"].items()}
    if "class_shares" in target:
        target["class_shares"] = {name: round(share, DIGITS) for name, share in target["class_shares"].items()}
    return {**reference, "columns": columns, "target": target}


def target_profile(frame: pd.DataFrame, spec: Spec) -> dict[str, Any]:
    """The target's reference facts: binary, the positive class and rate; multiclass, each class's share of
    the rows; regression, the mean (its range and nulls are the target column's)."""
    target = spec.target
    if target.task == Task.BINARY:
        return {"column": target.column, "positive_class": target.positive_class,
                "positive_rate": float(labels(frame, spec).mean())}
    values = frame[target.column]
    found: dict[str, Any] = {"column": target.column, "task": str(target.task)}
    if target.task == Task.MULTICLASS:
        found["class_shares"] = {name: rows / len(frame) for name, rows in count_levels(values).items()}
    else:
        found["mean"] = float(labels(frame, spec).mean())
    return found


def column_kind(name: str, series: pd.Series, spec: Spec, kinds: dict[str, str]) -> str:
    """Which checks a column gets: categorical (the target; a regression target: numeric), the feature's resolved
    kind (``kinds``), numeric (another number, not an id), else other."""
    if name == spec.target.column:
        return "numeric" if spec.target.task == Task.REGRESSION else "categorical"
    if name in kinds:
        return kinds[name]
    if type_family(series) == "numeric" and name not in spec.id_columns:
        return "numeric"
    return "other"


def profile(frame: pd.DataFrame, spec: Spec, kinds: dict[str, str]) -> dict[str, Any]:
    """The (unrounded) reference profile of an ingested (PII-masked) frame whose features are of ``kinds``
    (:func:`mlpipe.data.columns.feature_kinds`); see the module docstring."""
    hashed = {rule.column for rule in spec.pii if rule.action == "hash"}
    columns = {str(name): column_profile(frame[name], column_kind(name, frame[name], spec, kinds), name in hashed)
               for name in frame.columns}
    return {"version": VERSION, "rows": len(frame), "columns": columns, "target": target_profile(frame, spec)}


def read_profile(uri: str | None, pipeline: str = "<name>") -> dict[str, Any]:
    """The reference profile at ``uri`` (``validation.profile``); an empty one (no columns, no target rate)
    without a profile. A profile that is missing or not a profile is refused, saying how to make it."""
    if not uri:
        return {"columns": {}}
    make = f"make it with `mlpipe profile dags/pipelines/{pipeline}.yaml` (or `make run PIPELINE={pipeline}`)"
    if not storage.exists(uri):
        raise Refused(f"validation.profile: there is no reference profile at {uri}; {make}, then review and "
                        "commit it")
    reference = storage.read_json(uri)
    if not isinstance(reference, dict) or not isinstance(reference.get("columns"), dict):
        raise Refused(f"validation.profile {uri}: not an mlpipe profile (no 'columns' mapping); {make}")
    return reference


def check_feedback(spec: Spec) -> None:
    """Late outcomes (``monitoring.feedback.source``) must have the id columns and the target column."""
    source = spec.monitoring.feedback.source
    if not source:
        return
    names = list(map(str, next(datasets.batches(source, 1, fmt=None)).columns))
    if missing := [name for name in [*spec.id_columns, spec.target.column] if name not in names]:
        raise SpecError(f"monitoring.feedback.source: {missing} (id_columns and target.column) are not columns "
                        f"of {source}; its columns are: {', '.join(names)}")


# What a profile records of the target, for the reviewer, per task.
TARGET_FIGURE = {Task.BINARY: "the positive rate", Task.MULTICLASS: "the class shares",
                 Task.REGRESSION: "the target's mean"}


def ensure_profile(spec: Spec, output: str | None = None, keep: bool = True) -> str:
    """Write the spec's reference profile (to ``output``, else ``validation.profile``), unless ``keep`` and the
    spec's exists (``make run`` keeps it, ``mlpipe profile`` writes anew); say which: where, each feature's kind,
    and the spec's warnings (:func:`mlpipe.data.columns.reason_warnings`)."""
    uri = uris.normalize(spec.validation.profile or "")
    if keep and not output and spec.validation.profile and storage.exists(uri):
        return f"reference profile: {uri}"
    written = write_profile(spec, output)
    profiled = storage.read_json(written)["columns"]
    features = spec.feature_columns(list(profiled))
    kinds = {name: profiled[name]["kind"] for name in features}
    listed = "; ".join(f"{kind} {', '.join(n for n, k in kinds.items() if k == kind)}"
                       for kind in ("categorical", "numeric") if kind in kinds.values())
    warnings = "".join(f"\n  warning: {warning}" for warning in reason_warnings(spec, features))
    return (f"reference profile: wrote {written}\n  features: {listed}{warnings}\n  Review it (each column's kind, "
            f"range and categories, {TARGET_FIGURE[spec.target.task]}) and commit it: later runs are validated "
            "against it.")


def write_profile(spec: Spec, output: str | None = None) -> str:
    """Profile the spec's data source and write it to ``output`` or ``validation.profile``; return the URI.

    Every column the spec names is checked first (:func:`mlpipe.data.columns.check_named`), and each
    feature's kind is inferred from the first batch unless the spec sets it. The source is read
    ``data.batch_rows`` rows at a time, PII-masked as ingest does, and the batches' profiles are
    combined: every row counts, and memory holds one batch. What the spec's reason texts leave unsaid is
    logged as warnings (:func:`mlpipe.data.columns.reason_warnings`).
    """
    destination = output or spec.validation.profile
    if not destination:
        raise SpecError(f"{spec.name}: validation.profile is not set; give an output URI (--output)")
    destination = uris.normalize(destination)
    reference, kinds = None, {}
    for frame in datasets.batches(spec.data.source, spec.data.batch_rows, fmt=spec.data.format):
        if reference is None:
            check_named(spec, list(map(str, frame.columns)), spec.data.source)
        mask_pii(frame, spec.pii)
        if reference is None:
            kinds = feature_kinds(frame, spec, source=spec.data.source)
        batch = profile(frame, spec, kinds)
        reference = batch if reference is None else combined(reference, batch)
    if reference is None:
        raise SpecError(f"{spec.data.source}: the data has no rows to profile")
    check_feedback(spec)
    written = storage.write_json(destination, rounded(reference))
    for warning in reason_warnings(spec, spec.feature_columns(list(reference["columns"]))):
        log.warning("%s", warning)
    return written
