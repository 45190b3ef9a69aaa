"""Artifact-store URIs (``file://`` or ``s3://``): normalizing, joining and taking them apart.

Pure string work, no I/O: the store itself is :mod:`mlpipe.store.storage`.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from mlpipe.core.errors import StorageError

SCHEMES = ("file", "s3")


def normalize(uri: str | os.PathLike[str]) -> str:
    """Return ``uri`` as ``file:///abs/path`` or ``s3://bucket/key``; plain paths become file URIs."""
    text = os.fspath(uri)
    scheme = urlparse(text).scheme
    if scheme in ("", "file"):
        path = text[len("file://") :] if scheme == "file" else text
        return Path(path).expanduser().resolve().as_uri()
    if scheme not in SCHEMES:
        raise StorageError(f"{text}: unsupported URI scheme {scheme!r} (expected one of {', '.join(SCHEMES)})")
    return text.rstrip("/")


def join(base: str, *parts: str) -> str:
    """Join path parts onto a URI with ``/``."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def local_path(uri: str) -> Path:
    """The filesystem path of a ``file://`` URI."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise StorageError(f"{uri}: not a local file URI")
    return Path(parsed.path)


def bucket_key(uri: str) -> tuple[str, str]:
    """The bucket and key of an ``s3://`` URI."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def is_s3(uri: str) -> bool:
    """Whether ``uri`` names an S3 object or prefix."""
    return uri.startswith("s3://")
