"""MLflow, the system of record for runs, metrics, plots and the model registry.

The tracking server comes from ``$MLFLOW_TRACKING_URI`` (MLflow reads it itself);
new experiments put their artifacts under ``$MLPIPE_MLFLOW_ARTIFACTS`` when set.
One pipeline run is one MLflow run: ``train`` starts it, later steps add to it.
"""

from __future__ import annotations

import os
import subprocess
import time

RUN_URI_TAG = "mlpipe.run_uri"
DATA_VERSION_TAG = "mlpipe.data_version"
PIPELINE_TAG = "mlpipe.pipeline"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
NOTES_TAG = "mlflow.note.content"  # shown as the description in the MLflow UI

# MlflowClient.log_batch accepts at most 100 params and 1000 metrics per request.
MAX_BATCH_PARAMS = 100
MAX_BATCH_METRICS = 1000


def experiment_id(name: str) -> str:
    """The id of experiment ``name``, created (with the configured artifact root) if missing."""
    import mlflow

    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = os.environ.get("MLPIPE_MLFLOW_ARTIFACTS")
    return mlflow.create_experiment(name, artifact_location=f"{root.rstrip('/')}/{name}" if root else None)


def git_commit() -> str | None:
    """The commit of the code that runs, when it runs from a git checkout (or $MLPIPE_GIT_COMMIT)."""
    if commit := os.environ.get("MLPIPE_GIT_COMMIT"):
        return commit
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,  # noqa: S607
                             cwd=os.path.dirname(__file__), check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


def run_tags(pipeline: str, run_uri: str, data_version: str, notes: str = "") -> dict[str, str]:
    """The tags of a pipeline run's MLflow run: pipeline, run folder, data version, git commit, trigger notes."""
    tags = {PIPELINE_TAG: pipeline, RUN_URI_TAG: run_uri, DATA_VERSION_TAG: data_version}
    if notes:
        tags[NOTES_TAG] = notes
    if commit := git_commit():
        tags[GIT_COMMIT_TAG] = commit
    return tags


def log_batch(run_id: str, params: dict[str, object], metrics: list[tuple[str, float, int]]) -> None:
    """Log params and ``(key, value, step)`` metrics in as few requests as MLflow allows."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient()
    items = [Param(key, str(value)) for key, value in params.items()]
    for start in range(0, len(items), MAX_BATCH_PARAMS):
        client.log_batch(run_id, params=items[start:start + MAX_BATCH_PARAMS])
    stamp = int(time.time() * 1000)
    points = [Metric(key, float(value), stamp, step) for key, value, step in metrics]
    for start in range(0, len(points), MAX_BATCH_METRICS):
        client.log_batch(run_id, metrics=points[start:start + MAX_BATCH_METRICS])
