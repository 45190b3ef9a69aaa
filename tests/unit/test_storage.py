"""The artifact store on the local filesystem and on a real S3 endpoint process."""

from __future__ import annotations

import pandas as pd
import pytest

from mlpipe import storage


def test_normalize_makes_file_uris(tmp_path):
    assert storage.normalize(tmp_path / "a") == (tmp_path / "a").as_uri()
    assert storage.normalize("s3://bucket/key/") == "s3://bucket/key"
    with pytest.raises(storage.StorageError, match="unsupported URI scheme 'ftp'"):
        storage.normalize("ftp://host/file.csv")


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    uri = storage.normalize(tmp_path / "deep" / "folder" / "x.json")
    storage.write_json(uri, {"a": 1})
    storage.write_json(uri, {"a": 2})
    assert storage.read_json(uri) == {"a": 2}
    assert [p.name for p in (tmp_path / "deep" / "folder").iterdir()] == ["x.json"]


def test_missing_file_is_named(tmp_path):
    uri = storage.normalize(tmp_path / "missing.csv")
    with pytest.raises(storage.StorageError, match=f"{uri}: no such file"):
        storage.read_bytes(uri)


def _roundtrip(base: str) -> None:
    frame = pd.DataFrame({"x": [1.5, 2.5], "y": ["a", "b"]})
    uri = storage.write_parquet(frame, storage.join(base, "step", "out.parquet"))
    storage.write_bytes(storage.join(base, "step", "sub", "b.txt"), b"b")
    pd.testing.assert_frame_equal(storage.read_parquet(uri), frame)
    assert storage.exists(uri)
    assert storage.children(storage.join(base, "step")) == ["out.parquet", "sub"]
    assert storage.modified(uri) > 0
    storage.remove_tree(storage.join(base, "step"))
    assert not storage.exists(uri)
    assert storage.children(storage.join(base, "step")) == []


def test_local_roundtrip(tmp_path):
    _roundtrip(storage.normalize(tmp_path))


def test_s3_roundtrip(s3_bucket):
    _roundtrip(f"s3://{s3_bucket}/prefix")
    with pytest.raises(storage.StorageError, match="no such object"):
        storage.read_bytes(f"s3://{s3_bucket}/nothing/here")
