"""ingest: read the source data batch by batch, mask PII, write a Parquet snapshot and its data version.

The source (``data.source``) is a CSV or Parquet file, or a folder of them (:mod:`mlpipe.data.datasets`),
on ``file://`` or ``s3://``. It is read ``data.batch_rows`` rows at a time; each batch gets the
spec's PII rules and becomes one part of the snapshot, ``<run>/ingest/snapshot/part-NNNNN.parquet``.
The data version is a content hash folded batch by batch, so neither the file nor the snapshot is
ever held in memory whole. A source that cannot be read, or whose rows repeat an id
(:mod:`mlpipe.data.ids`), leaves no snapshot behind.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from mlpipe.core.errors import Refused
from mlpipe.core.results import Ingest
from mlpipe.data import datasets
from mlpipe.data.columns import CATEGORICAL, check_named, feature_kinds
from mlpipe.data.ids import UniqueIds
from mlpipe.data.pii import mask_pii
from mlpipe.data.profile import read_profile
from mlpipe.store.runs import Run

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class DataVersion:
    """Content hash of a dataset: its column names and every value, folded in batch by batch.

    Rows are hashed one by one (``pandas.util.hash_pandas_object``), with integer and boolean
    columns as floats, so the version depends on the values and their order, not on how the rows
    were batched (a batch of an integer column with a missing value is read as floats).
    """

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.columns: list[str] | None = None

    def update(self, frame: pd.DataFrame) -> None:
        import pandas as pd
        from pandas.api import types

        if self.columns is None:
            self.columns = list(map(str, frame.columns))
            self.digest.update(repr(self.columns).encode())
        widened = frame.astype({name: "float64" for name, dtype in frame.dtypes.items()
                                if types.is_integer_dtype(dtype) or types.is_bool_dtype(dtype)})
        self.digest.update(pd.util.hash_pandas_object(widened, index=False).to_numpy().tobytes())

    def hexdigest(self) -> str:
        return self.digest.hexdigest()[:16]


def ingest(run: Run) -> Ingest:
    """Snapshot the source; first check the columns the spec names and resolve each feature's kind."""
    spec = run.spec
    version, pii, ids = DataVersion(), {}, UniqueIds(spec.id_columns, spec.data.source)
    kinds: dict[str, str] = {}
    with datasets.PartWriter(run.path("ingest", "snapshot")) as snapshot:
        batches = datasets.batches(spec.data.source, spec.data.batch_rows, fmt=spec.data.format)
        for index, frame in enumerate(batches):
            if index == 0:
                check_named(spec, list(map(str, frame.columns)), spec.data.source)
            ids.add(frame)
            pii = mask_pii(frame, spec.pii)
            if index == 0:  # the first batch decides: every batch has its columns and types (mlpipe.data.datasets)
                kinds = feature_kinds(frame, spec, read_profile(spec.validation.profile, spec.name)["columns"],
                                      spec.data.source)
            version.update(frame)
            snapshot.write(frame)
            columns = frame.shape[1]
        if not snapshot.rows:
            raise Refused(f"{spec.data.source}: the data has a header but no rows")
        ids.check()
    log.info("ingested %d rows x %d columns from %s in %d parts (data version %s)",
             snapshot.rows, columns, spec.data.source, len(snapshot.uris), version.hexdigest())
    return Ingest(source=spec.data.source, snapshot=snapshot.folder, data_version=version.hexdigest(),
                  rows=snapshot.rows, columns=columns, parts=len(snapshot.uris), pii=pii,
                  categorical=[name for name, kind in kinds.items() if kind == CATEGORICAL])
