"""Which artifact-store objects the ops app may serve, and how.

Only objects under the store root (``$MLPIPE_STORE``) are served, never a path that climbs out
of it (``..``, a symlink out of a ``file://`` store, another bucket or prefix), and only a few
kinds of file. The pipeline is the first path segment under the root; the caller checks the
user may see it. HTML is served with a sandboxing Content-Security-Policy (no scripts, its own
origin), so a report cannot run code with the Airflow UI's cookies.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlpipe.core import uris
from mlpipe.store import storage
from mlpipe.store.runs import store_uri

MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json", ".png": "image/png",
               ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8", ".csv": "text/csv; charset=utf-8",
               ".md": "text/plain; charset=utf-8"}  # Markdown (model cards) shown as text: browsers save text/markdown
SANDBOX = ("sandbox; default-src 'none'; style-src 'unsafe-inline' https:; img-src data: https:; "
           "font-src data: https:")
HEADERS = {"Content-Security-Policy": SANDBOX, "X-Content-Type-Options": "nosniff",
           "Cache-Control": "private, no-store"}


class ArtifactRefused(ValueError):
    """A URI the app will not serve, with the reason."""


@dataclass(frozen=True)
class Artifact:
    """A servable object: its URI, the pipeline it belongs to and its media type."""

    uri: str
    pipeline: str
    media_type: str


def _relative(uri: str, root: str) -> str:
    """``uri``'s path below ``root`` ('' when it is the root); refuses anything outside it."""
    given, base = urlparse(uri), urlparse(root)
    if given.scheme != base.scheme or given.netloc != base.netloc or given.query or given.fragment:
        raise ArtifactRefused(f"{uri}: not in the artifact store {root}")
    path = unquote(given.path)
    if "\x00" in path or any(part == ".." for part in path.split("/")):
        raise ArtifactRefused(f"{uri}: '..' is not allowed in an artifact path")
    inner, top = posixpath.normpath(path), posixpath.normpath(unquote(base.path) or "/")
    if inner != top and not inner.startswith(top.rstrip("/") + "/"):
        raise ArtifactRefused(f"{uri}: not in the artifact store {root}")
    if given.scheme == "file":  # a symlink must not lead out of the store either
        real, real_top = Path(inner).resolve(), Path(top).resolve()
        if not real.is_relative_to(real_top):
            raise ArtifactRefused(f"{uri}: leads out of the artifact store {root}")
    return inner[len(top):].strip("/")


def resolve(uri: str, root: str | None = None) -> Artifact:
    """The artifact at ``uri`` if the app may serve it; :class:`ArtifactRefused` says why not."""
    if not uri:
        raise ArtifactRefused("no artifact URI given")
    root = root or store_uri()
    relative = _relative(uri, root)
    parts = relative.split("/")
    if len(parts) < 2:
        raise ArtifactRefused(f"{uri}: not an artifact of a pipeline")
    suffix = posixpath.splitext(parts[-1])[1].lower()
    if suffix not in MEDIA_TYPES:
        raise ArtifactRefused(f"{uri}: only {', '.join(sorted(MEDIA_TYPES))} files are served")
    return Artifact(uris.join(root, relative), parts[0], MEDIA_TYPES[suffix])


def read(artifact: Artifact) -> bytes:
    """The bytes of ``artifact`` (:class:`mlpipe.core.errors.StorageError` when it does not exist)."""
    return storage.read_bytes(artifact.uri)
