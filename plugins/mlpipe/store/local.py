"""The ``file://`` backend of the artifact store: atomic writes by rename (or hard link), on a local or
mounted filesystem. Every function takes a ``file://`` URI (:mod:`mlpipe.store.storage` dispatches)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mlpipe.core.errors import StorageError
from mlpipe.core.uris import local_path


def exists(uri: str) -> bool:
    return local_path(uri).exists()


def read_bytes(uri: str) -> bytes:
    path = local_path(uri)
    if not path.is_file():
        raise StorageError(f"{uri}: no such file")
    return path.read_bytes()


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    path = local_path(uri)
    if not path.is_file():
        raise StorageError(f"{uri}: no such file")
    yield path


def write_bytes(uri: str, data: bytes) -> str:
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
    shutil.rmtree(local_path(uri), ignore_errors=True)


def modified(uri: str) -> float:
    return local_path(uri).stat().st_mtime


def children(uri: str) -> list[str]:
    path = local_path(uri)
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def create_exclusive(uri: str, data: bytes) -> bool:
    """Written beside the target and hard-linked to it: ``link`` fails when the target exists."""
    with _staged(local_path(uri), data) as staged:
        try:
            os.link(staged, local_path(uri))
        except FileExistsError:
            return False
    return True
