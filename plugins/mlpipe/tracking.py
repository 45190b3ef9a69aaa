"""MLflow, the system of record for runs, metrics, plots and the model registry.

The tracking server comes from ``$MLFLOW_TRACKING_URI`` (MLflow reads it itself);
new experiments put their artifacts under ``$MLPIPE_MLFLOW_ARTIFACTS`` when set.
One pipeline run is one MLflow run: ``train`` starts it, later steps add to it.
"""

from __future__ import annotations

import os
import subprocess

RUN_URI_TAG = "mlpipe.run_uri"
DATA_VERSION_TAG = "mlpipe.data_version"


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
