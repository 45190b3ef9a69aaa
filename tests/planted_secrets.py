"""Planted secret values, and a scan for them in what a run leaves behind.

Each secret the project reads from its environment gets a marked value; a test runs something
real with them set, then scans every file it wrote (Parquet decoded, SQLite databases and logs
as bytes), its output and its rendered objects: a hit names where the value was found.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

MARK = "PLANTEDSECRET"
SECRETS = {
    "MLPIPE_PII_KEY": f"{MARK}-pii-hash-key",
    "MLPIPE_SERVE_TOKEN": f"{MARK}-serve-token",
    "AWS_ACCESS_KEY_ID": f"{MARK}ACCESSKEY",
    "AWS_SECRET_ACCESS_KEY": f"{MARK}-aws-secret-key",
    "MLFLOW_TRACKING_TOKEN": f"{MARK}-mlflow-token",
    "MLFLOW_TRACKING_PASSWORD": f"{MARK}-mlflow-password",
    "AIRFLOW_CONN_MLPIPE_ALERTS_WEBHOOK": f"https://hooks.example.com/services/{MARK}-webhook-token",
    "AIRFLOW_CONN_SMTP_DEFAULT": f"smtp://alerts:{MARK}-smtp-password@localhost:1",
}


def text_of(path: Path) -> str:
    """What a file holds, as text: a Parquet file's decoded values, any other file's bytes."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path).astype(str).to_csv()
    return path.read_bytes().decode("latin-1")


def files_under(*roots: Path) -> list[Path]:
    """Every file under ``roots`` (a root may itself be a file, e.g. a SQLite database)."""
    return [path for root in roots for path in ([root] if root.is_file() else root.rglob("*")) if path.is_file()]


def hits(values: Iterable[str], files: Iterable[Path] = (), **texts: str) -> list[tuple[str, str]]:
    """``(where, value)`` for every planted value found in a file or in one of the named ``texts``."""
    values = list(values)
    found = [(str(path), value) for path in files for value in values if value in text_of(path)]
    return found + [(name, value) for name, text in texts.items() for value in values if value in text]
