"""URLs of the UIs people are sent to: MLflow runs and model versions, Airflow's base URL, and
artifact-store objects (reports) served by the ops view's artifact route.

Import-light: no Airflow or MLflow at import time (alert messages and operator links both use it).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from mlpipe.core import settings

URL_PREFIX = "/mlpipe"  # where the Airflow api-server mounts the ops view (mlpipe.ui)
ARTIFACT_ROUTE = "/artifact"  # its route that serves a stored report


def mlflow_ui() -> str:
    """The MLflow UI's base URL (``$MLPIPE_MLFLOW_UI``, default http://localhost:5000), no trailing slash."""
    return settings.mlflow_ui().rstrip("/")


def mlflow_run_url(run_id: str, experiment_id: str | None = None) -> str:
    """The MLflow UI page of run ``run_id``: in its experiment when the id is known, else ``#/runs/<id>``,
    the UI's direct run route (it finds the experiment itself, so no tracking-server call is needed)."""
    run = quote(str(run_id), safe="")
    if experiment_id:
        return f"{mlflow_ui()}/#/experiments/{quote(str(experiment_id), safe='')}/runs/{run}"
    return f"{mlflow_ui()}/#/runs/{run}"


def model_version_url(name: str, version: int | str) -> str:
    """The MLflow UI page of version ``version`` of registered model ``name``."""
    return f"{mlflow_ui()}/#/models/{quote(str(name), safe='')}/versions/{quote(str(version), safe='')}"


def artifact_url(uri: str, base: str = "") -> str:
    """The ops view's URL that serves the artifact-store object ``uri``, under Airflow's base URL ``base``
    (a path relative to the Airflow UI when empty)."""
    prefix = base.rstrip("/")
    return f"{prefix}{URL_PREFIX}{ARTIFACT_ROUTE}?{urlencode({'uri': uri})}"
