"""ingest: read the source data, mask PII, write a Parquet snapshot and its data version."""

from __future__ import annotations

import hashlib
import io
import logging
from typing import Any

from mlpipe import storage
from mlpipe.pii import mask_pii
from mlpipe.runs import Run
from mlpipe.steps import StepError

log = logging.getLogger(__name__)


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
