"""Settings: where things live and how they behave, from the environment. The only module that reads it.

Each variable is named once here: a constant holding its name (registered with a line saying what
it does in :data:`VARIABLES`), its default where it has one, and one accessor that reads, parses and
checks it. Values are read at call time, never cached, so a variable set after import (a test's
``monkeypatch.setenv``, a task's environment) counts. A variable set to the empty string counts as
unset. A malformed value raises :class:`SettingError` (a :class:`~mlpipe.core.errors.Refused`, and a
``ValueError``) naming the variable and the value.

Two helpers serve the places that need the environment as a whole: :func:`environment` (the
environment of a child process, with overrides) and :func:`set_default` (set a variable unless set).

Import-light: the standard library and mlpipe.core only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mlpipe.core.errors import Refused

VARIABLES: dict[str, str] = {}  # name -> what it does, for every variable mlpipe reads


class SettingError(Refused, ValueError):
    """A variable of the environment holds a value that cannot be used; the message names it and the value."""


def _variable(name: str, doc: str) -> str:
    """Register variable ``name`` (what it does: ``doc``) and return its name."""
    VARIABLES[name] = doc
    return name


# Where things live.
STORE = _variable("MLPIPE_STORE", "artifact store root (file:// or s3://)")
DEFAULT_STORE = "file:///tmp/mlpipe-store"
MLFLOW_TRACKING_URI = _variable("MLFLOW_TRACKING_URI", "MLflow tracking server or database (MLflow reads it too)")
MLFLOW_ARTIFACTS = _variable("MLPIPE_MLFLOW_ARTIFACTS", "artifact root of new MLflow experiments (unset: MLflow's)")
MLFLOW_UI = _variable("MLPIPE_MLFLOW_UI", "base URL of the MLflow UI that links point to")
DEFAULT_MLFLOW_UI = "http://localhost:5000"
OPTUNA_STORAGE = _variable("MLPIPE_OPTUNA_STORAGE", "database URL of the tuning study (unset: a journal file)")
OPTUNA_DIR = _variable("MLPIPE_OPTUNA_DIR", "folder of the tuning journal file when there is no OPTUNA_STORAGE")
OPTUNA_DIR_NAME = "mlpipe-optuna"  # the default folder, under the temporary directory
SERVER_URL = _variable("MLPIPE_SERVER_URL", "model server that deploy_model reloads and smoke-tests (unset: skipped)")
NODE_POOLS = _variable("MLPIPE_NODE_POOLS", "node-pools file of the kubernetes runtime (unset: the bundled one)")

# How steps run.
RUNTIME = _variable("MLPIPE_RUNTIME", "how tasks run steps: local (a subprocess) or kubernetes (a pod per step)")
RUNTIMES = ("local", "kubernetes")
DEFAULT_RUNTIME = "local"
DEVICE = _variable("MLPIPE_DEVICE", "device of training and tuning, overriding the spec's training.device")
DEVICES = ("cpu", "cuda")
GIT_COMMIT = _variable("MLPIPE_GIT_COMMIT", "commit recorded on MLflow runs (unset: git rev-parse HEAD)")
USER = _variable("USER", "who rolls back, recorded in the audit log when no actor is given")
MODEL_CARD = _variable("MLPIPE_MODEL_CARD", "write a model card for every registered version: 1 (default) or 0")

# Secrets.
PII_KEY = _variable("MLPIPE_PII_KEY", "HMAC key of the spec's pii 'hash' rules (a secret)")
SERVE_TOKEN = _variable("MLPIPE_SERVE_TOKEN",
                        "bearer token the model server requires and deploy_model sends (unset: none)")
S3_KMS_KEY_ID = _variable("MLPIPE_S3_KMS_KEY_ID", "KMS key of SSE-KMS on S3 writes (unset: SSE-S3, AES256)")

# Timing.
S3_RETRY_SECONDS = _variable("MLPIPE_S3_RETRY_SECONDS", "how long a failing S3 request is retried (0: no retries)")
DEFAULT_S3_RETRY_SECONDS = 120.0
PROMOTION_LEASE_SECONDS = _variable("MLPIPE_PROMOTION_LEASE_SECONDS",
                                    "when a crashed holder's promotion lease expires, after it was taken")
DEFAULT_PROMOTION_LEASE_SECONDS = 1800.0
PROMOTION_WAIT_SECONDS = _variable("MLPIPE_PROMOTION_WAIT_SECONDS", "how long a promotion waits for the lease")
DEFAULT_PROMOTION_WAIT_SECONDS = 2400.0
SERVE_POLL_SECONDS = _variable("MLPIPE_SERVE_POLL_SECONDS", "how often the model server polls the model's aliases")
DEFAULT_SERVE_POLL_SECONDS = 30.0

# MLflow's own HTTP client settings (mlpipe bounds them where unset: mlpipe.registry.tracking).
MLFLOW_HTTP_MAX_RETRIES = _variable("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "retries of an MLflow HTTP request")
MLFLOW_DEFAULT_HTTP_MAX_RETRIES = 7  # MLflow's own default when unset
MLFLOW_HTTP_BACKOFF_FACTOR = _variable("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "backoff between MLflow's retries")
MLFLOW_HTTP_TIMEOUT = _variable("MLFLOW_HTTP_REQUEST_TIMEOUT", "seconds MLflow waits for an HTTP answer")


# Reading and parsing: the only uses of os.environ in mlpipe.

def _text(name: str) -> str | None:
    """The value of variable ``name``; ``None`` when unset or empty."""
    return os.environ.get(name) or None


def _non_negative(name: str, default: float, parse: type, what: str, unit: str = "") -> float:
    """Variable ``name`` read by ``parse`` (``what`` it must be), 0 or more; ``default`` when unset."""
    text = _text(name)
    if text is None:
        return default
    try:
        value = parse(text)
    except ValueError:
        raise SettingError(f"${name}={text!r} is not {what}") from None
    if not value >= 0:  # also refuses nan
        raise SettingError(f"${name}={text!r} must be 0 or more{unit}")
    return value


def _seconds(name: str, default: float) -> float:
    """Variable ``name`` as a number of seconds, 0 or more; ``default`` when unset."""
    return _non_negative(name, default, float, "a number of seconds", " seconds")


def _count(name: str, default: int) -> int:
    """Variable ``name`` as a whole number, 0 or more; ``default`` when unset."""
    return int(_non_negative(name, default, int, "a whole number"))


def _choice(name: str, choices: tuple[str, ...]) -> str | None:
    """Variable ``name``, one of ``choices``; ``None`` when unset."""
    text = _text(name)
    if text is not None and text not in choices:
        raise SettingError(f"${name}={text!r}: expected one of {', '.join(choices)}")
    return text


def environment(**overrides: str) -> dict[str, str]:
    """A copy of the whole environment with ``overrides`` (name=value), for a child process."""
    return {**os.environ, **overrides}


def set_default(name: str, value: str) -> str:
    """Set variable ``name`` to ``value`` unless it is set already; return its value."""
    return os.environ.setdefault(name, value)


# One accessor per variable.

def store() -> str:
    """``$MLPIPE_STORE``: the artifact store root as given (default ``file:///tmp/mlpipe-store``)."""
    return _text(STORE) or DEFAULT_STORE


def mlflow_tracking_uri() -> str | None:
    """``$MLFLOW_TRACKING_URI``: the MLflow tracking server or database, if set."""
    return _text(MLFLOW_TRACKING_URI)


def mlflow_artifacts() -> str | None:
    """``$MLPIPE_MLFLOW_ARTIFACTS``: the artifact root of new MLflow experiments, if set."""
    return _text(MLFLOW_ARTIFACTS)


def mlflow_ui() -> str:
    """``$MLPIPE_MLFLOW_UI``: the MLflow UI's base URL as given (default ``http://localhost:5000``)."""
    return _text(MLFLOW_UI) or DEFAULT_MLFLOW_UI


def mlflow_http_max_retries() -> int:
    """``$MLFLOW_HTTP_REQUEST_MAX_RETRIES``: how often MLflow retries a request (default MLflow's, 7)."""
    return _count(MLFLOW_HTTP_MAX_RETRIES, MLFLOW_DEFAULT_HTTP_MAX_RETRIES)


def optuna_storage() -> str | None:
    """``$MLPIPE_OPTUNA_STORAGE``: the database URL of the tuning study, if set."""
    return _text(OPTUNA_STORAGE)


def optuna_dir() -> Path:
    """``$MLPIPE_OPTUNA_DIR``: the folder of the tuning journal (default ``<tmp>/mlpipe-optuna``)."""
    return Path(_text(OPTUNA_DIR) or Path(tempfile.gettempdir()) / OPTUNA_DIR_NAME)


def server_url() -> str | None:
    """``$MLPIPE_SERVER_URL``: the model server that deploy_model reloads, if set."""
    return _text(SERVER_URL)


def node_pools() -> Path | None:
    """``$MLPIPE_NODE_POOLS``: the node-pools file, if set (else the bundled one, :mod:`mlpipe.compute.node_pools`)."""
    text = _text(NODE_POOLS)
    return None if text is None else Path(text)


def runtime() -> str:
    """``$MLPIPE_RUNTIME``: ``local`` (the default) or ``kubernetes``."""
    return _choice(RUNTIME, RUNTIMES) or DEFAULT_RUNTIME


def device() -> str | None:
    """``$MLPIPE_DEVICE``: ``cpu`` or ``cuda``, overriding the spec's ``training.device``; ``None`` when unset."""
    return _choice(DEVICE, DEVICES)


def git_commit() -> str | None:
    """``$MLPIPE_GIT_COMMIT``: the commit of the running code, if set."""
    return _text(GIT_COMMIT)


def user() -> str | None:
    """``$USER``: the login name, if set."""
    return _text(USER)


def model_card() -> bool:
    """``$MLPIPE_MODEL_CARD``: whether register writes a model card for the version (``1``, the default) or not
    (``0``)."""
    return _choice(MODEL_CARD, ("0", "1")) != "0"


def pii_key() -> str | None:
    """``$MLPIPE_PII_KEY``: the secret key of the pii ``hash`` rules, if set."""
    return _text(PII_KEY)


def serve_token() -> str | None:
    """``$MLPIPE_SERVE_TOKEN``: the model server's bearer token, if set."""
    return _text(SERVE_TOKEN)


def s3_kms_key_id() -> str | None:
    """``$MLPIPE_S3_KMS_KEY_ID``: the KMS key of S3 writes, if set."""
    return _text(S3_KMS_KEY_ID)


def s3_retry_seconds() -> float:
    """``$MLPIPE_S3_RETRY_SECONDS``: how long a failing S3 request is retried (default 120; 0: not at all)."""
    return _seconds(S3_RETRY_SECONDS, DEFAULT_S3_RETRY_SECONDS)


def promotion_lease_seconds() -> float:
    """``$MLPIPE_PROMOTION_LEASE_SECONDS``: when a promotion lease expires after it was taken (default 1800)."""
    return _seconds(PROMOTION_LEASE_SECONDS, DEFAULT_PROMOTION_LEASE_SECONDS)


def promotion_wait_seconds() -> float:
    """``$MLPIPE_PROMOTION_WAIT_SECONDS``: how long a promotion waits for the lease (default 2400)."""
    return _seconds(PROMOTION_WAIT_SECONDS, DEFAULT_PROMOTION_WAIT_SECONDS)


def serve_poll_seconds() -> float:
    """``$MLPIPE_SERVE_POLL_SECONDS``: how often the model server polls the aliases (default 30)."""
    return _seconds(SERVE_POLL_SECONDS, DEFAULT_SERVE_POLL_SECONDS)
