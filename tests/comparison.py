"""Step results of two runs made comparable: what differs between runs by nature left out or made neutral."""

from __future__ import annotations

import re
from typing import Any

# keys whose values differ between two runs of the same step: timings, MLflow ids and URIs
VOLATILE = frozenset({"seconds", "seconds_by_phase", "train_seconds", "mlflow_run_id", "tuning_run_id", "model_uri"})
MLFLOW_ID = re.compile(r"[0-9a-f]{32}")
TIMESTAMP = re.compile(r"\d{8}T\d{6}\.\d+Z")


def comparable(value: Any, names: dict[str, str]) -> Any:
    """``value`` (a result, or any JSON value in it) without :data:`VOLATILE` keys at any depth, each key of
    ``names`` (a run's own text: its run folder, its store prefix) replaced by its neutral stand-in, and
    MLflow ids and time stamps made neutral."""
    if isinstance(value, dict):
        return {key: comparable(item, names) for key, item in value.items() if key not in VOLATILE}
    if isinstance(value, list):
        return [comparable(item, names) for item in value]
    if isinstance(value, str):
        for own, neutral in names.items():
            value = value.replace(own, neutral)
        return TIMESTAMP.sub("<time>", MLFLOW_ID.sub("<mlflow id>", value))
    return value
