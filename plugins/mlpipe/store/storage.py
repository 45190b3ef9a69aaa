"""The artifact store: read and write objects by URI, one backend per scheme behind one interface.

``file://`` URIs go to :mod:`mlpipe.store.local`, ``s3://`` URIs to :mod:`mlpipe.store.s3` (boto3 is
imported only then; credentials come from the usual environment, never from code or specs). Both
write atomically: a reader sees the old object or the new one, never half of one. A missing object
or a refused request raises :class:`~mlpipe.core.errors.StorageError` naming the URI (refused input);
S3 still unavailable at its retry deadline (``$MLPIPE_S3_RETRY_SECONDS``) raises
:class:`~mlpipe.core.errors.StorageUnavailable` (retried by the runtimes). Every S3 write is
encrypted server-side (SSE-KMS with ``$MLPIPE_S3_KMS_KEY_ID``, else SSE-S3).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from mlpipe.core.uris import is_s3
from mlpipe.store import local, s3


def backend(uri: str) -> ModuleType:
    """The module that stores ``uri``: :mod:`mlpipe.store.s3` or :mod:`mlpipe.store.local`. Both have the
    functions below (exists, read_bytes, local_copy, write_bytes, remove_tree, modified, children,
    create_exclusive) with the same meaning; this module adds what is the same for both."""
    return s3 if is_s3(uri) else local


def exists(uri: str) -> bool:
    """Whether an object (or a local file or folder) exists at ``uri``."""
    return backend(uri).exists(uri)


def read_bytes(uri: str) -> bytes:
    """The content of the object at ``uri``; a missing object raises :class:`StorageError` naming it."""
    return backend(uri).read_bytes(uri)


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local file with the content of ``uri``: the file itself, or a temporary download of an S3 object
    (streamed to disk, so reading a large object this way needs no memory of its size)."""
    with backend(uri).local_copy(uri) as path:
        yield path


def write_bytes(uri: str, data: bytes) -> str:
    """Write ``data`` to ``uri`` atomically (on S3: encrypted) and return the URI."""
    return backend(uri).write_bytes(uri, data)


def remove_tree(uri: str) -> None:
    """Delete everything under ``uri`` (a step's output folder before it is rewritten)."""
    backend(uri).remove_tree(uri)


def modified(uri: str) -> float:
    """When the object at ``uri`` was last written (seconds since the epoch)."""
    return backend(uri).modified(uri)


def children(uri: str) -> list[str]:
    """The names directly under the folder ``uri`` (empty when it does not exist)."""
    return backend(uri).children(uri)


def create_exclusive(uri: str, data: bytes) -> bool:
    """Write ``data`` to ``uri`` only if nothing is there yet: ``True`` when this call created it.

    Of several concurrent callers exactly one gets ``True``, and nobody sees a partial object.
    """
    return backend(uri).create_exclusive(uri, data)


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def write_json(uri: str, value: Any) -> str:
    return write_bytes(uri, json.dumps(value, indent=2, sort_keys=True, default=str).encode())


def write_parquet(frame, uri: str) -> str:
    """Write a pandas DataFrame as Parquet (zstd) atomically."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, compression="zstd")
    return write_bytes(uri, buffer.getvalue())


def read_parquet(uri: str, columns: list[str] | None = None):
    """A Parquet object as a pandas DataFrame (only ``columns`` when given)."""
    import pandas as pd

    return pd.read_parquet(io.BytesIO(read_bytes(uri)), columns=columns)
