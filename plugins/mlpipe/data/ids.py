"""Row ids (the spec's ``id_columns``): every row has one, and no two rows share one.

Outcomes are joined with predictions by id (:mod:`mlpipe.steps.monitor`), so a repeated id
would make a join ambiguous: ingest and score refuse such data, naming the rows. Ids are
checked batch by batch as 64-bit hashes of the id columns (8 bytes a row, never the ids
themselves); the rows are named by position, 1 being the first data row, and never by value,
since an id may be personal data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlpipe.core.errors import Refused

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class UniqueIds:
    """Collects the id hashes of a dataset read in batches; :meth:`check` refuses repeated ids."""

    def __init__(self, columns: list[str], dataset: str) -> None:
        self.columns = columns
        self.dataset = dataset
        self.hashes: list[np.ndarray] = []
        self.rows = 0

    def add(self, frame: pd.DataFrame) -> None:
        """Take the next batch's ids; a row without an id is refused at once."""
        import numpy as np
        import pandas as pd

        if not self.columns:
            return
        ids = frame[self.columns]
        if (missing := np.flatnonzero(ids.isna().any(axis=1).to_numpy())).size:
            raise Refused(f"id_columns {self.columns}: row {self.rows + missing[0] + 1} of {self.dataset} "
                            f"has no id ({missing.size} rows in its batch); every row needs one")
        self.hashes.append(pd.util.hash_pandas_object(ids, index=False).to_numpy())
        self.rows += len(frame)

    def check(self) -> None:
        """Raise :class:`Refused` naming the first two rows that share an id, and how many rows repeat one."""
        import numpy as np

        if not self.hashes:
            return
        hashes = np.concatenate(self.hashes)
        order = np.argsort(hashes, kind="stable")
        repeats = np.flatnonzero(hashes[order][1:] == hashes[order][:-1])
        if repeats.size:
            first, second = sorted(order[[repeats[0], repeats[0] + 1]] + 1)
            raise Refused(f"id_columns {self.columns}: rows {first} and {second} of {self.dataset} have the "
                            f"same id ({repeats.size} rows repeat an earlier id); ids must be unique")
