"""MLflow, the system of record for runs, metrics, plots and the model registry.

The tracking server comes from ``$MLFLOW_TRACKING_URI`` (MLflow reads it itself);
new experiments put their artifacts under ``$MLPIPE_MLFLOW_ARTIFACTS`` when set.
One pipeline run is one MLflow run: ``train`` starts it, later steps add to it.

MLflow's client retries a server that does not answer for about four minutes by default;
the ``mlpipe`` CLI bounds that (:data:`HTTP_DEFAULTS`, unless the environment sets them) so
that a step whose tracking server is down fails within seconds, with one line naming the
server (:func:`unreachable`), and the runtime retries the task.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from urllib.parse import urlparse

from mlpipe.core import settings
from mlpipe.core.errors import Unavailable

RUN_URI_TAG = "mlpipe.run_uri"
DATA_VERSION_TAG = "mlpipe.data_version"
PIPELINE_TAG = "mlpipe.pipeline"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
NOTES_TAG = "mlflow.note.content"  # shown as the description in the MLflow UI

# MLflow's HTTP client settings (its own variables) when the environment does not set them:
# 3 retries, 0 + 2 + 4 s apart (plus up to 1 s jitter each), 60 s to wait for an answer.
HTTP_DEFAULTS = {settings.MLFLOW_HTTP_MAX_RETRIES: "3", settings.MLFLOW_HTTP_BACKOFF_FACTOR: "1",
                 settings.MLFLOW_HTTP_TIMEOUT: "60"}

# What the MLflow server says when two requests insert the same row at once (SQLite, Postgres, MySQL).
DUPLICATE_KEY = re.compile(r"UNIQUE constraint failed|duplicate key value|Duplicate entry", re.IGNORECASE)

log = logging.getLogger(__name__)

# MlflowClient.log_batch accepts at most 100 params and 1000 metrics per request.
MAX_BATCH_PARAMS = 100
MAX_BATCH_METRICS = 1000


def experiment_id(name: str) -> str:
    """The id of experiment ``name``, created (with the configured artifact root) if missing, once among racing runs."""
    import mlflow
    from mlflow.exceptions import MlflowException

    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = settings.mlflow_artifacts()
    try:
        return mlflow.create_experiment(name, artifact_location=f"{root.rstrip('/')}/{name}" if root else None)
    except MlflowException as error:  # another run of the pipeline created it at the same moment
        if (found := mlflow.get_experiment_by_name(name)) is None:
            raise
        log.info("experiment %s was created by another run at the same time (%s)", name, error.error_code)
        return found.experiment_id


def log_input(dataset, context: str, attempts: int = 3) -> None:
    """``mlflow.log_input``, tried again when another run logging the same dataset at once won the race to create it.

    The MLflow server looks the dataset up, then inserts it: two runs of the same data logging it at
    the same moment collide on its unique key. The loser's transaction is rolled back, so the next
    try finds the winner's dataset and links this run to it.
    """
    import mlflow
    from mlflow.exceptions import RestException

    for attempt in range(1, attempts + 1):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except RestException as error:
            if attempt == attempts or not DUPLICATE_KEY.search(str(error)):
                raise
            log.info("dataset %s was created by another run at the same time; logging it again", dataset.name)
            time.sleep(0.2 * attempt)


def git_commit() -> str | None:
    """The commit of the code that runs, when it runs from a git checkout (or $MLPIPE_GIT_COMMIT)."""
    if commit := settings.git_commit():
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


def bound_http_retries() -> None:
    """Set MLflow's HTTP retry and timeout settings to :data:`HTTP_DEFAULTS` where the environment has none."""
    for name, value in HTTP_DEFAULTS.items():
        settings.set_default(name, value)


def classified(error: BaseException) -> BaseException:
    """``error``, or an :class:`~mlpipe.core.errors.Unavailable` naming the MLflow server when the server
    did not answer (:func:`unreachable`): so a step or command whose tracking server is down is retried."""
    message = unreachable(error)
    return error if message is None else Unavailable(message)


def unreachable(error: BaseException) -> str | None:
    """One line saying the MLflow tracking server did not answer, when that is what ``error`` comes from.

    ``error`` or an error it was raised from (MLflow wraps them) must be a connection failure, an answer
    broken off midway (the server died while answering), a timeout or exhausted retries of a request to
    ``$MLFLOW_TRACKING_URI``; else ``None``.
    """
    import requests

    server = (settings.mlflow_tracking_uri() or "").rstrip("/")
    if not server.startswith(("http://", "https://")):
        return None
    failures = (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError,
                requests.exceptions.ChunkedEncodingError)
    chain = _chain(error)
    for cause in chain:
        if isinstance(cause, failures) and (url := _request_url(cause, chain, server)):
            retries = settings.mlflow_http_max_retries()
            return (f"MLflow tracking server {server} did not answer ({type(cause).__name__} on "
                    f"{urlparse(url).path} after {retries} retries, {settings.MLFLOW_HTTP_MAX_RETRIES}); "
                    "retry once it is back")
    return None


def _request_url(cause: BaseException, chain: list[BaseException], server: str) -> str | None:
    """The URL on ``server`` that the failed request ``cause`` asked for, else ``None``.

    A broken-off answer carries no request: MLflow's wrapping error names the URL instead.
    """
    url = getattr(cause.request, "url", None) or ""
    if url.startswith(server):
        return url
    return next((found.group(0) for link in chain if (found := re.search(re.escape(server) + r"\S*", str(link)))),
                None)


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it was raised from, outermost first."""
    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and all(cause is not seen for seen in chain):
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain
