"""The artifact store on the local filesystem and on a real S3 endpoint process (moto_server, behind a proxy
that injects outages and error answers)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import pandas as pd
import pytest

from mlpipe.core import uris
from mlpipe.core.errors import StorageError, StorageUnavailable
from mlpipe.store import s3, s3_retry, storage
from tests.faults import CuttableProxy


def test_normalize_makes_file_uris(tmp_path):
    assert uris.normalize(tmp_path / "a") == (tmp_path / "a").as_uri()
    assert uris.normalize("s3://bucket/key/") == "s3://bucket/key"
    with pytest.raises(StorageError, match="unsupported URI scheme 'ftp'"):
        uris.normalize("ftp://host/file.csv")


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    uri = uris.normalize(tmp_path / "deep" / "folder" / "x.json")
    storage.write_json(uri, {"a": 1})
    storage.write_json(uri, {"a": 2})
    assert storage.read_json(uri) == {"a": 2}
    assert [p.name for p in (tmp_path / "deep" / "folder").iterdir()] == ["x.json"]


def test_missing_file_is_named(tmp_path):
    uri = uris.normalize(tmp_path / "missing.csv")
    with pytest.raises(StorageError, match=f"{uri}: no such file"):
        storage.read_bytes(uri)


def _roundtrip(base: str) -> None:
    frame = pd.DataFrame({"x": [1.5, 2.5], "y": ["a", "b"]})
    uri = storage.write_parquet(frame, uris.join(base, "step", "out.parquet"))
    storage.write_bytes(uris.join(base, "step", "sub", "b.txt"), b"b")
    pd.testing.assert_frame_equal(storage.read_parquet(uri), frame)
    assert storage.exists(uri)
    assert storage.children(uris.join(base, "step")) == ["out.parquet", "sub"]
    assert storage.modified(uri) > 0
    storage.remove_tree(uris.join(base, "step"))
    assert not storage.exists(uri)
    assert storage.children(uris.join(base, "step")) == []


def test_local_roundtrip(tmp_path):
    _roundtrip(uris.normalize(tmp_path))


def test_s3_roundtrip(s3_bucket):
    _roundtrip(f"s3://{s3_bucket}/prefix")
    with pytest.raises(StorageError, match="no such object"):
        storage.read_bytes(f"s3://{s3_bucket}/nothing/here")


@pytest.fixture
def s3_proxy(s3_bucket, s3_endpoint, monkeypatch) -> Iterator[CuttableProxy]:
    """The S3 client pointed at moto_server through a proxy that can fail requests (bucket: s3_bucket)."""
    moto = urlparse(s3_endpoint)
    proxy = CuttableProxy((moto.hostname, moto.port))
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    s3.client.cache_clear()
    yield proxy
    proxy.close()
    s3.client.cache_clear()


def test_s3_writes_ask_for_sse_s3_or_sse_kms_with_the_configured_key(s3_bucket, monkeypatch):
    monkeypatch.delenv("MLPIPE_S3_KMS_KEY_ID", raising=False)
    storage.write_bytes(f"s3://{s3_bucket}/plain", b"x")
    head = s3.client().head_object(Bucket=s3_bucket, Key="plain")
    assert (head["ServerSideEncryption"], head.get("SSEKMSKeyId")) == ("AES256", None)

    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    monkeypatch.setenv("MLPIPE_S3_KMS_KEY_ID", key)
    storage.write_parquet(pd.DataFrame({"x": [1]}), f"s3://{s3_bucket}/kms/part.parquet")
    head = s3.client().head_object(Bucket=s3_bucket, Key="kms/part.parquet")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key)


@pytest.mark.parametrize(("status", "code"), [(503, "SlowDown"), (500, "InternalError"), (429, "TooManyRequests"),
                                              (400, "RequestTimeout")])
def test_s3_errors_that_may_pass_are_retried(s3_proxy, s3_bucket, status, code, caplog):
    s3_proxy.fail_next((status, code), (status, code))
    uri = storage.write_bytes(f"s3://{s3_bucket}/retried", b"data")
    assert storage.read_bytes(uri) == b"data"
    retries = [r.getMessage() for r in caplog.records if r.name == "mlpipe.store.s3_retry"]
    assert [m.split(" (")[0] for m in retries] == ["S3 PutObject attempt 1 failed", "S3 PutObject attempt 2 failed"]
    assert f"(HTTP {status} {code}); retrying in " in retries[0]


@pytest.mark.parametrize(("status", "code", "access", "message"), [
    (403, "AccessDenied", lambda uri: storage.write_bytes(uri, b"data"),
     r"An error occurred \(AccessDenied\) when calling the PutObject operation"),
    (501, "NotImplemented", lambda uri: storage.write_bytes(uri, b"data"),  # e.g. SSE on a MinIO without KMS
     r"An error occurred \(NotImplemented\) when calling the PutObject operation"),
    (404, "NoSuchKey", storage.read_bytes, "no such object")])
def test_s3_errors_that_cannot_pass_fail_at_once_naming_the_uri(s3_proxy, s3_bucket, status, code, access, message,
                                                                caplog):
    s3_proxy.fail_next((status, code))
    uri = f"s3://{s3_bucket}/refused"
    with pytest.raises(StorageError, match=f"^{uri}: {message}") as refused:
        access(uri)
    assert not isinstance(refused.value, StorageUnavailable)  # refused: a step exits 2, not retried
    assert not [r for r in caplog.records if r.name == "mlpipe.store.s3_retry"]  # failed at once
    assert not storage.exists(uri)


def test_an_exclusive_create_that_s3_refuses_fails_naming_the_uri(s3_proxy, s3_bucket):
    s3_proxy.fail_next((403, "AccessDenied"))
    uri = f"s3://{s3_bucket}/leases/taken"
    with pytest.raises(StorageError, match=rf"^{uri}: An error occurred \(AccessDenied\)"):
        storage.create_exclusive(uri, b"holder")
    assert not storage.exists(uri)
    assert storage.create_exclusive(uri, b"holder") is True and storage.create_exclusive(uri, b"other") is False


def test_s3_outage_is_retried_until_the_deadline_then_fails_naming_the_uri(s3_proxy, s3_bucket, monkeypatch,
                                                                           caplog):
    monkeypatch.setenv("MLPIPE_S3_RETRY_SECONDS", "2")
    s3.client.cache_clear()
    uri = f"s3://{s3_bucket}/never"
    s3.client()
    s3_proxy.cut()
    with pytest.raises(StorageUnavailable, match=rf"^{uri}: S3 is still unavailable at the retry deadline "
                                                          r"\(\$MLPIPE_S3_RETRY_SECONDS\): Could not connect"):
        storage.write_bytes(uri, b"data")
    retries = [r for r in caplog.records if r.name == "mlpipe.store.s3_retry"]
    assert len(retries) >= 4  # waits of ~0.2, 0.4, 0.8, then up to the deadline
    assert retries[-1].getMessage().startswith("S3 PutObject failed after")
    assert "(until 2s after the first failure)" in retries[0].getMessage()


def test_retry_seconds_is_checked(monkeypatch):
    monkeypatch.setenv("MLPIPE_S3_RETRY_SECONDS", "soon")
    with pytest.raises(ValueError, match="MLPIPE_S3_RETRY_SECONDS='soon' is not a number of seconds"):
        s3_retry.retry_seconds()
    monkeypatch.setenv("MLPIPE_S3_RETRY_SECONDS", "-1")
    with pytest.raises(ValueError, match="MLPIPE_S3_RETRY_SECONDS='-1' must be 0 or more seconds"):
        s3_retry.retry_seconds()
