"""The artifact store: read and write objects by URI (``file://`` or ``s3://``).

Writes are atomic: a reader sees the old object or the new one, never half of one
(a local file is written beside its target and renamed; an S3 ``put_object`` is
atomic by itself). boto3 is imported only when an ``s3://`` URI is used, and it
takes its endpoint and credentials from the usual environment (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ...), never from code or specs.

On S3:

- every request is retried through an outage of up to ``$MLPIPE_S3_RETRY_SECONDS``
  (default 120; :mod:`mlpipe.store.s3_retry`); an error that retrying cannot mend (``NoSuchKey``,
  ``AccessDenied``, an outage that outlasts the deadline) raises :class:`StorageError` naming the URI;
- every object is written with server-side encryption: SSE-KMS with the key
  ``$MLPIPE_S3_KMS_KEY_ID`` when it is set, else SSE-S3 (``AES256``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from mlpipe.core.errors import StorageError, StorageUnavailable
from mlpipe.core.uris import bucket_key as _bucket_key
from mlpipe.core.uris import is_s3 as _is_s3
from mlpipe.core.uris import local_path

KMS_KEY_ENV = "MLPIPE_S3_KMS_KEY_ID"
NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})  # S3 error codes of a missing object


@cache
def _s3():
    import boto3
    from botocore.config import Config

    from mlpipe.store import s3_retry

    # botocore's own retries are off: s3_retry retries until a deadline instead of a number of attempts.
    # An endpoint that takes no connection costs an attempt 10 s, not botocore's default 60.
    client = boto3.client("s3", config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                              connect_timeout=10))
    s3_retry.install(client)
    return client


@contextlib.contextmanager
def _s3_errors(uri: str) -> Iterator[None]:
    """Raise a failed S3 request (after its retries) as a :class:`StorageError` naming ``uri``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in NOT_FOUND:
            raise StorageError(f"{uri}: no such object") from error
        raise _failed(uri, error) from error
    except BotoCoreError as error:
        raise _failed(uri, error) from error


def _failed(uri: str, error: Exception) -> StorageError:
    """``error`` of a request for ``uri`` as a :class:`StorageUnavailable` when it may pass, else a StorageError."""
    from mlpipe.store.s3_retry import RETRY_SECONDS_ENV, transient

    if transient(error):
        return StorageUnavailable(f"{uri}: S3 is still unavailable at the retry deadline (${RETRY_SECONDS_ENV}): "
                                  f"{error}")
    return StorageError(f"{uri}: {error}")


def encryption() -> dict[str, str]:
    """The server-side encryption arguments of every S3 write: SSE-KMS with ``$MLPIPE_S3_KMS_KEY_ID``, else SSE-S3."""
    if key := os.environ.get(KMS_KEY_ENV):
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key}
    return {"ServerSideEncryption": "AES256"}


def exists(uri: str) -> bool:
    """Whether an object (or a local file or folder) exists at ``uri``."""
    if _is_s3(uri):
        bucket, key = _bucket_key(uri)
        with _s3_errors(uri):
            response = _s3().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return bool(response.get("Contents"))
    return local_path(uri).exists()


def read_bytes(uri: str) -> bytes:
    """The content of the object at ``uri``; a missing object raises :class:`StorageError` naming it.

    An S3 object is downloaded by boto3's transfer manager, which also retries a download cut midway.
    """
    if _is_s3(uri):
        bucket, key = _bucket_key(uri)
        buffer = io.BytesIO()
        with _s3_errors(uri):
            _s3().download_fileobj(bucket, key, buffer)
        return buffer.getvalue()
    path = local_path(uri)
    if not path.is_file():
        raise StorageError(f"{uri}: no such file")
    return path.read_bytes()


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A local file with the content of ``uri``: the file itself, or a temporary download of an S3 object.

    Streams to disk, so reading a large object this way needs no memory of its size.
    """
    if not _is_s3(uri):
        path = local_path(uri)
        if not path.is_file():
            raise StorageError(f"{uri}: no such file")
        yield path
        return
    bucket, key = _bucket_key(uri)
    with tempfile.TemporaryDirectory(prefix="mlpipe-") as folder:
        path = Path(folder) / Path(key).name
        with _s3_errors(uri):
            _s3().download_file(bucket, key, str(path))
        yield path


def write_bytes(uri: str, data: bytes) -> str:
    """Write ``data`` to ``uri`` atomically (on S3: encrypted, see :func:`encryption`) and return the URI."""
    if _is_s3(uri):
        bucket, key = _bucket_key(uri)
        with _s3_errors(uri):
            _s3().put_object(Bucket=bucket, Key=key, Body=data, **encryption())
        return uri
    path = local_path(uri)
    with _staged(path, data) as staged:
        os.replace(staged, path)
    return uri


@contextlib.contextmanager
def _staged(path: Path, data: bytes) -> Iterator[str]:
    """``data`` written and synced to a hidden temporary file beside ``path``, to be moved or linked
    into place; removed on exit if it is still there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(data)
        tmp.flush()
        os.fsync(tmp.fileno())
    try:
        yield tmp.name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp.name)


def remove_tree(uri: str) -> None:
    """Delete everything under ``uri`` (a step's output folder before it is rewritten)."""
    if _is_s3(uri):
        bucket, key = _bucket_key(uri)
        prefix = key.rstrip("/") + "/"
        paginator = _s3().get_paginator("list_objects_v2")
        with _s3_errors(uri):
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                objects = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if objects:
                    _s3().delete_objects(Bucket=bucket, Delete={"Objects": objects})
        return
    shutil.rmtree(local_path(uri), ignore_errors=True)


def modified(uri: str) -> float:
    """When the object at ``uri`` was last written (seconds since the epoch)."""
    if _is_s3(uri):
        bucket, key = _bucket_key(uri)
        with _s3_errors(uri):
            return _s3().head_object(Bucket=bucket, Key=key)["LastModified"].timestamp()
    return local_path(uri).stat().st_mtime


def children(uri: str) -> list[str]:
    """The names directly under the folder ``uri`` (empty when it does not exist)."""
    if _is_s3(uri):
        bucket, key = _bucket_key(uri)
        paginator = _s3().get_paginator("list_objects_v2")
        names = []
        with _s3_errors(uri):
            for page in paginator.paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/", Delimiter="/"):
                names += [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in page.get("CommonPrefixes", [])]
                names += [o["Key"].rsplit("/", 1)[-1] for o in page.get("Contents", [])]
        return sorted(names)
    path = local_path(uri)
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


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


def create_exclusive(uri: str, data: bytes) -> bool:
    """Write ``data`` to ``uri`` only if nothing is there yet: ``True`` when this call created it.

    Of several concurrent callers exactly one gets ``True``, and nobody sees a partial object:
    S3 ``put_object`` with ``IfNoneMatch='*'`` and the :func:`encryption` of every write (412, or
    409 while another conditional write of the key is in flight, means taken); a local file is
    written beside the target and hard-linked to it (``link`` fails when the target exists).
    """
    if _is_s3(uri):
        bucket, key = _bucket_key(uri)
        with _s3_errors(uri):
            try:
                _s3().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*", **encryption())
            except _s3().exceptions.ClientError as error:
                if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                    return False
                raise
        return True
    with _staged(local_path(uri), data) as staged:
        try:
            os.link(staged, local_path(uri))
        except FileExistsError:
            return False
    return True
