"""ingest: read the source data, mask PII, write a Parquet snapshot and its data version."""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
from typing import Any

from mlpipe import storage
from mlpipe.runs import Run
from mlpipe.steps import StepError

log = logging.getLogger(__name__)
PII_KEY_ENV = "MLPIPE_PII_KEY"


def read_source(uri: str, fmt: str | None):
    """Read a CSV or Parquet source into a DataFrame; unreadable or empty data raises :class:`StepError`."""
    import pandas as pd

    fmt = fmt or ("parquet" if uri.endswith((".parquet", ".pq")) else "csv")
    data = storage.read_bytes(uri)
    if not data.strip():
        raise StepError(f"{uri}: the file is empty (0 rows)")
    try:
        frame = pd.read_csv(io.BytesIO(data)) if fmt == "csv" else pd.read_parquet(io.BytesIO(data))
    except (ValueError, pd.errors.ParserError) as error:
        raise StepError(f"{uri}: cannot be read as {fmt}: {error}") from None
    if frame.empty:
        raise StepError(f"{uri}: the file has a header but no rows")
    return frame


def keyed_hash(values, key: bytes):
    """HMAC-SHA256 of each value (hex, 16 chars); missing values stay missing."""
    def digest(value: Any) -> str:
        return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()[:16]

    return values.map(digest, na_action="ignore")


def mask_pii(frame, rules) -> dict[str, str]:
    """Apply the spec's PII rules in place; return what was done to each column."""
    applied = {}
    for rule in rules:
        if rule.column not in frame.columns:
            raise StepError(f"pii rule for column {rule.column!r}: no such column in the data")
        if rule.action == "drop":
            frame.drop(columns=[rule.column], inplace=True)
        else:
            key = os.environ.get(PII_KEY_ENV)
            if not key:
                raise StepError(f"pii rule 'hash' for column {rule.column!r} needs the secret ${PII_KEY_ENV}")
            frame[rule.column] = keyed_hash(frame[rule.column], key.encode())
        applied[rule.column] = rule.action
    return applied


def data_version(frame) -> str:
    """Content hash of a dataset: column names, types and every value (not the file's bytes)."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def ingest(run: Run) -> dict[str, Any]:
    spec = run.spec
    frame = read_source(spec.data.source, spec.data.format)
    if spec.target.column not in frame.columns:
        raise StepError(f"target column {spec.target.column!r} (target.column) is not in the data; "
                        f"columns are: {', '.join(map(str, frame.columns))}")
    if missing := [c for c in spec.id_columns if c not in frame.columns]:
        raise StepError(f"id_columns {missing} are not in the data")
    pii = mask_pii(frame, spec.pii)
    snapshot = storage.write_parquet(frame, run.path("ingest", "snapshot.parquet"))
    version = data_version(frame)
    log.info("ingested %d rows x %d columns from %s (data version %s)",
             len(frame), frame.shape[1], spec.data.source, version)
    return {"source": spec.data.source, "snapshot": snapshot, "data_version": version,
            "rows": len(frame), "columns": frame.shape[1], "pii": pii}
