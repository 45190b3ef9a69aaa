"""The ``s3://`` backend of the artifact store. Every function takes an ``s3://`` URI
(:mod:`mlpipe.store.storage` dispatches).

boto3 is imported on first use and takes its endpoint and credentials from the usual environment
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...). Every request is retried through an outage of up to
``$MLPIPE_S3_RETRY_SECONDS`` (:mod:`mlpipe.store.s3_retry`); a failure past it raises
:class:`~mlpipe.core.errors.StorageUnavailable`, any other a :class:`~mlpipe.core.errors.StorageError`,
both naming the URI. Every object is written with server-side encryption (:func:`encryption`).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from mlpipe.core import settings
from mlpipe.core.errors import StorageError, StorageUnavailable
from mlpipe.core.uris import bucket_key
from mlpipe.store import s3_retry
from mlpipe.store.s3_retry import transient

NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound"})  # S3 error codes of a missing object


@cache
def client():
    import boto3
    from botocore.config import Config

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
    if transient(error):
        return StorageUnavailable(f"{uri}: S3 is still unavailable at the retry deadline "
                                  f"(${settings.S3_RETRY_SECONDS}): {error}")
    return StorageError(f"{uri}: {error}")


def encryption() -> dict[str, str]:
    """The server-side encryption arguments of every S3 write: SSE-KMS with ``$MLPIPE_S3_KMS_KEY_ID``, else SSE-S3."""
    if key := settings.s3_kms_key_id():
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key}
    return {"ServerSideEncryption": "AES256"}


def exists(uri: str) -> bool:
    bucket, key = bucket_key(uri)
    with _s3_errors(uri):
        response = client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    return bool(response.get("Contents"))


def read_bytes(uri: str) -> bytes:
    """Downloaded by boto3's transfer manager, which also retries a download cut midway."""
    bucket, key = bucket_key(uri)
    buffer = io.BytesIO()
    with _s3_errors(uri):
        client().download_fileobj(bucket, key, buffer)
    return buffer.getvalue()


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """A temporary download, streamed to disk."""
    bucket, key = bucket_key(uri)
    with tempfile.TemporaryDirectory(prefix="mlpipe-") as folder:
        path = Path(folder) / Path(key).name
        with _s3_errors(uri):
            client().download_file(bucket, key, str(path))
        yield path


def write_bytes(uri: str, data: bytes) -> str:
    """``put_object`` is atomic by itself."""
    bucket, key = bucket_key(uri)
    with _s3_errors(uri):
        client().put_object(Bucket=bucket, Key=key, Body=data, **encryption())
    return uri


def remove_tree(uri: str) -> None:
    bucket, key = bucket_key(uri)
    prefix = key.rstrip("/") + "/"
    paginator = client().get_paginator("list_objects_v2")
    with _s3_errors(uri):
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            objects = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if objects:
                client().delete_objects(Bucket=bucket, Delete={"Objects": objects})


def modified(uri: str) -> float:
    bucket, key = bucket_key(uri)
    with _s3_errors(uri):
        return client().head_object(Bucket=bucket, Key=key)["LastModified"].timestamp()


def children(uri: str) -> list[str]:
    bucket, key = bucket_key(uri)
    paginator = client().get_paginator("list_objects_v2")
    names = []
    with _s3_errors(uri):
        for page in paginator.paginate(Bucket=bucket, Prefix=key.rstrip("/") + "/", Delimiter="/"):
            names += [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in page.get("CommonPrefixes", [])]
            names += [o["Key"].rsplit("/", 1)[-1] for o in page.get("Contents", [])]
    return sorted(names)


def create_exclusive(uri: str, data: bytes) -> bool:
    """``put_object`` with ``IfNoneMatch='*'``: 412, or 409 while another conditional write of the key is in
    flight, means taken."""
    bucket, key = bucket_key(uri)
    with _s3_errors(uri):
        try:
            client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*", **encryption())
        except client().exceptions.ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412):
                return False
            raise
    return True
