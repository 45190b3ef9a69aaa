"""Datasets in the artifact store, read and written in bounded batches.

A dataset is one CSV or Parquet file (a URI ending in ``.csv``, ``.parquet`` or ``.pq``) or a
*folder* of them (any other URI): its ``.csv``/``.parquet`` files, sorted by name, are its parts.
``mlpipe synth``, ingest, split and batch scoring write folders of ``part-NNNNN.parquet`` files
(:class:`PartWriter`).

Reading goes one part at a time and, within a part, one batch of rows at a time (pyarrow:
Parquet row batches, streaming CSV blocks), so memory holds one batch whatever the dataset's
size. Every part must have the first part's columns and types; a part that does not, a row
that cannot be parsed or a value of the wrong type raises :class:`~mlpipe.steps.Refused`
naming the file and the column.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from mlpipe.core import uris
from mlpipe.core.errors import Refused
from mlpipe.store import storage

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
BATCH_ROWS = 250_000
CSV_BLOCK_BYTES = 16 << 20  # types are inferred from a CSV's first block: 16 MiB, ~100k loan rows
PART_NAME = "part-{:05d}.parquet"


def file_format(uri: str) -> str | None:
    """``csv`` or ``parquet`` from a file URI's suffix; ``None`` for a folder."""
    return FORMATS.get(PurePosixPath(uri).suffix.lower())


def files(uri: str, fmt: str | None = None) -> list[str]:
    """The files of a dataset: ``uri`` itself, or the CSV/Parquet files of the folder ``uri``, sorted.

    A URI without a known suffix is one file when ``fmt`` is given and it is not a folder.
    """
    if file_format(uri):
        return [uri]
    names = [name for name in storage.children(uri) if file_format(name) and not name.startswith(".")]
    if not names and fmt and storage.exists(uri):
        return [uri]
    if not names:
        raise Refused(f"{uri}: no such file, nor a folder of .csv or .parquet files")
    return [uris.join(uri, name) for name in names]


def _column_named(message: str, header: list[str]) -> str:
    """pyarrow's ``CSV column #3`` with the column's name added."""
    def named(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return f"{match.group(0)} ({header[index]!r})" if index < len(header) else match.group(0)

    return re.sub(r"column #(\d+)", named, message)


def _rebatched(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """``batches`` regrouped into tables of exactly ``rows`` rows (the last one: what is left)."""
    import pyarrow as pa

    pending, count = [], 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)


SHOWN_CHARS = 200  # of a bad row's text in an error message


class _BadRows:
    """pyarrow's ``invalid_row_handler``: remembers the first malformed row (line number, text), refuses it."""

    def __init__(self) -> None:
        self.first: str | None = None

    def __call__(self, row) -> str:
        if self.first is None:
            where = f"line {row.number}" if row.number is not None else "a row"
            self.first = (f"{where} has {row.actual_columns} fields, the header {row.expected_columns}: "
                          f"{row.text[:SHOWN_CHARS]!r}")
        return "error"


def _csv_tables(path, rows: int, columns: list[str] | None) -> Iterator[pa.Table]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    if path.stat().st_size == 0:
        raise Refused("the file is empty (0 bytes)")
    # An empty field is a missing value in every column, text included (as pandas reads it).
    options = pcsv.ConvertOptions(include_columns=columns or [], strings_can_be_null=True)
    bad_rows, header = _BadRows(), []
    try:
        reader = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
                               parse_options=pcsv.ParseOptions(invalid_row_handler=bad_rows),
                               convert_options=options)
        header = reader.schema.names
        yield from _rebatched(reader, rows)
    except pa.ArrowInvalid as error:
        reason = bad_rows.first or _column_named(str(error), header)[:SHOWN_CHARS]
        raise Refused(f"cannot be read as csv: {reason}") from None


def _parquet_tables(path, rows: int, columns: list[str] | None) -> Iterator[pa.Table]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns):
            yield pa.Table.from_batches([batch])
    except (pa.ArrowInvalid, OSError) as error:
        raise Refused(f"cannot be read as parquet: {error}") from None


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in the first part's column order and types; a column that differs raises Refused."""
    import pyarrow as pa

    if set(table.column_names) != set(schema.names):
        missing, extra = set(schema.names) - set(table.column_names), set(table.column_names) - set(schema.names)
        raise Refused(f"its columns differ from the first part's: missing {sorted(missing)}, "
                        f"extra {sorted(extra)}")
    table = table.select(schema.names)
    if table.schema.equals(schema):
        return table
    for field in schema:
        found = table.schema.field(field.name).type
        if found != field.type:
            try:
                table = table.set_column(schema.get_field_index(field.name), field,
                                         table[field.name].cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise Refused(f"column {field.name!r} is {found} here but {field.type} in the first part") \
                    from None
    return table


def tables(uri: str, rows: int = BATCH_ROWS, columns: list[str] | None = None,
           fmt: str | None = None) -> Iterator[pa.Table]:
    """The dataset at ``uri`` as Arrow tables of at most ``rows`` rows (only ``columns`` when given), lazily.

    ``fmt`` (``csv``/``parquet``) is the format of files whose suffix does not say.
    """
    schema = None
    for part in files(uri, fmt):
        reader = _csv_tables if (file_format(part) or fmt) == "csv" else _parquet_tables
        try:
            with storage.local_copy(part) as path:
                for table in reader(path, rows, columns):
                    schema = schema or table.schema
                    yield _conformed(table, schema)
        except Refused as error:
            raise Refused(f"{part}: {error}") from None


def batches(uri: str, rows: int = BATCH_ROWS, columns: list[str] | None = None,
            fmt: str | None = None) -> Iterator[pd.DataFrame]:
    """The dataset at ``uri`` as pandas DataFrames of at most ``rows`` rows, lazily (see :func:`tables`)."""
    for table in tables(uri, rows, columns, fmt):
        yield table.to_pandas()


def read(uri: str, columns: list[str] | None = None, fmt: str | None = None) -> pd.DataFrame:
    """The whole dataset at ``uri`` in memory: for data known to be small (a sample, a test's split)."""
    import pyarrow as pa

    parts = list(tables(uri, columns=columns, fmt=fmt))
    if not parts:
        raise Refused(f"{uri}: the dataset has no rows")
    return pa.concat_tables(parts).to_pandas()


def column_names(uri: str, fmt: str | None = None) -> list[str]:
    """The columns of the dataset at ``uri`` (its first file's), reading one batch of it."""
    return next(tables(uri, rows=1, fmt=fmt)).column_names


def row_counts(uri: str) -> list[int]:
    """The rows of each Parquet file of the dataset at ``uri``, from the files' footers."""
    import pyarrow.parquet as pq

    counts = []
    for part in files(uri):
        if file_format(part) != "parquet":
            raise Refused(f"{part}: row counts are read from Parquet footers; this is a {file_format(part)} file")
        with storage.local_copy(part) as path:
            counts.append(pq.ParquetFile(path).metadata.num_rows)
    return counts


def sample(uri: str, rows: int, seed: int, columns: list[str] | None = None) -> pd.DataFrame:
    """A seeded sample of at most ``rows`` rows of a Parquet dataset (all of it when smaller), in file order.

    Memory holds one batch plus the sample: the rows are chosen from the files' row counts up front.
    """
    import numpy as np
    import pyarrow as pa

    total = sum(row_counts(uri))
    if total <= rows:
        return read(uri, columns)
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=rows, replace=False))
    kept, start = [], 0
    for table in tables(uri, columns=columns):
        low, high = np.searchsorted(chosen, [start, start + table.num_rows])
        if high > low:
            kept.append(table.take(pa.array(chosen[low:high] - start)))
        start += table.num_rows
    return pa.concat_tables(kept).to_pandas()


class PartWriter:
    """Writes a dataset folder one part at a time: ``<folder>/part-00000.parquet``, ``part-00001`` ...

    Used as a context manager, it deletes the folder when the block fails: a half-written dataset
    is never left behind.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.uris: list[str] = []
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> str:
        """Write ``frame`` as the next part (atomically) and return its URI."""
        uri = storage.write_parquet(frame, uris.join(self.folder, PART_NAME.format(len(self.uris))))
        self.uris.append(uri)
        self.rows += len(frame)
        return uri

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None:
            storage.remove_tree(self.folder)

def require_columns(uri: str, columns: list[str], field: str) -> None:
    """Raise :class:`Refused` naming the first of ``columns`` (from spec ``field``) not in the dataset ``uri``."""
    present = set(column_names(uri))
    for column in columns:
        if column not in present:
            raise Refused(f"{field}: column {column!r} is not in the analysis set")
