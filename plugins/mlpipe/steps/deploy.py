"""deploy: have the running model server take the new champion, and prove it serves it.

Runs after ``register``. When that run promoted its version and a server is configured
(``$MLPIPE_SERVER_URL``; bearer token from ``$MLPIPE_SERVE_TOKEN`` when set), it calls
``POST /reload`` and then a smoke ``POST /predict`` with the analysis set's first rows:
the answer must come from the new champion's version, with the model's own scores
(within :data:`TOLERANCE`). On any failure the ``champion`` alias is rolled back to the
``previous-champion`` (:func:`mlpipe.registry.rollback.rollback`), the server is asked to reload
that one, the failure is audited, and the step fails. Not promoted, no server
configured, or no longer the champion (a later run took over): nothing to deploy,
and the result says why.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, NoReturn

from mlpipe.core import settings
from mlpipe.core.errors import Refused
from mlpipe.core.results import Deploy, Register, Split, Train
from mlpipe.data import datasets
from mlpipe.model.tabular import TabularModel
from mlpipe.registry.aliases import champion_version
from mlpipe.registry.rollback import rollback
from mlpipe.store import audit
from mlpipe.store.runs import Run

if TYPE_CHECKING:
    import httpx
    import pandas as pd

log = logging.getLogger(__name__)

SMOKE_ROWS = 20
TOLERANCE = 1e-6
TIMEOUT_S = 30.0


class DeployError(Exception):
    """The server did not take, or did not correctly serve, the new champion."""


def records(frame: pd.DataFrame, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The feature columns of ``frame`` as JSON records (missing values as null, numbers at full precision)."""
    return json.loads(frame[schema["columns"]].to_json(orient="records", double_precision=15))


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """``POST path`` and its JSON answer; a :class:`DeployError` for anything but a 2xx JSON object."""
    import httpx

    try:
        response = client.post(path, json=body)
        response.raise_for_status()
        answer = response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise DeployError(f"POST {path}: {type(error).__name__}: {error}") from error
    if not isinstance(answer, dict):
        raise DeployError(f"POST {path}: expected a JSON object, got {answer!r:.200}")
    return answer


def client(url: str) -> httpx.Client:
    """An HTTP client for the server at ``url``, with the bearer token when one is configured."""
    import httpx

    token = settings.serve_token()
    return httpx.Client(base_url=url, timeout=TIMEOUT_S, headers={"Authorization": f"Bearer {token}"} if token else {})


def served_values(prediction: dict[str, Any], classes: list[str] | None) -> list[float]:
    """The numbers of one ``/predict`` prediction: its score (binary, regression), or each class's probability in
    the model's order (multiclass: ``classes``)."""
    if classes:
        return [float(prediction["probabilities"][name]) for name in classes]
    return [float(prediction["score"])]


def check_answer(answer: dict[str, Any], version: int, expected: list[list[float]],
                 classes: list[str] | None = None) -> None:
    """Raise :class:`DeployError` unless ``/predict`` answered from ``version`` with the ``expected`` scores (per
    record, :func:`served_values`)."""
    try:
        answered = answer["model"]["version"]
        scores = [served_values(prediction, classes) for prediction in answer["predictions"]]
    except (KeyError, TypeError, ValueError) as error:
        raise DeployError(f"POST /predict: unexpected answer ({type(error).__name__}: {error})") from error
    if str(answered) != str(version):
        raise DeployError(f"POST /predict was answered by version {answered}, not the new champion {version}")
    if len(scores) != len(expected):
        raise DeployError(f"POST /predict returned {len(scores)} predictions for {len(expected)} records")
    worst = max(abs(got - want) for served, own in zip(scores, expected, strict=True)
                for got, want in zip(served, own, strict=True))
    if worst > TOLERANCE:
        raise DeployError(f"POST /predict scores differ from the model's own by up to {worst:.3g} (> {TOLERANCE})")


def smoke_test(url: str, version: int, model: TabularModel, rows: pd.DataFrame) -> int:
    """Reload the server at ``url``, then check it serves ``version`` with ``model``'s scores; rows checked."""
    with client(url) as http:
        reloaded = post(http, "/reload", {})
        if str(reloaded.get("version")) != str(version):
            raise DeployError(f"POST /reload left the server on version {reloaded.get('version')}, "
                              f"not the new champion {version}")
        answer = post(http, "/predict", {"records": records(rows, model.schema)})
    own = model.scores(rows).reshape(len(rows), -1).tolist()  # a row of numbers per record
    check_answer(answer, version, own, model.schema.get("classes"))
    return len(rows)


def reload_quietly(url: str) -> None:
    """Ask the server to reload (after a rollback); a failure is only logged, the server also polls the alias."""
    try:
        with client(url) as http:
            post(http, "/reload", {})
    except DeployError as error:
        log.warning("could not make %s reload after the rollback: %s", url, error)


def fail(run: Run, registered: Register, url: str, problem: str) -> NoReturn:
    """Audit the failed deploy, roll the champion alias back, and raise a :class:`Refused` saying so."""
    name, version = registered.model_name, registered.version
    audit.record(run.spec.name, {"action": "deploy_failed", "model": name, "version": version, "server": url,
                                 "problem": problem, "run": run.uri, "actor": f"deploy step of run {run.run_id}"})
    what = f"deploy of {name} version {version} to {url} failed: {problem}"
    try:
        back = rollback(name, reason=what, actor=f"deploy step of run {run.run_id}", expected_champion=version)
    except Refused as error:
        raise Refused(f"{what}; the champion alias was not rolled back: {error}") from None
    reload_quietly(url)
    raise Refused(f"{what}; the champion alias was rolled back to version {back['to_version']}")


def current_champion(name: str) -> int | None:
    """The version ``name``'s ``champion`` alias points at now."""
    from mlflow import MlflowClient

    return champion_version(MlflowClient(), name)


def deploy(run: Run) -> Deploy:
    registered = run.result(Register)
    version, url = registered.version, settings.server_url()
    outcome = {"deployed": False, "server": url, "version": version, "smoke_rows": 0}
    if not registered.promoted:
        return Deploy(**outcome, skipped=f"version {version} was not promoted: nothing to deploy")
    if url is None:
        return Deploy(**outcome, skipped=f"${settings.SERVER_URL} is not set: no model server to deploy to")
    if (champion := current_champion(registered.model_name)) != version:
        return Deploy(**outcome, skipped=f"version {version} is no longer the champion (now: {champion}): "
                                         "nothing to deploy")
    model = TabularModel.load(run.result(Train).model_folder)
    rows = next(datasets.batches(run.result(Split).analysis, SMOKE_ROWS))  # the first rows, not the whole set
    try:
        checked = smoke_test(url, version, model, rows)
    except DeployError as error:
        fail(run, registered, url, str(error))
    audit.record(run.spec.name, {"action": "deployed", "model": registered.model_name, "version": version,
                                 "server": url, "smoke_rows": checked, "run": run.uri,
                                 "actor": f"deploy step of run {run.run_id}"})
    log.info("%s version %s deployed to %s; %d smoke rows match", registered.model_name, version, url, checked)
    return Deploy(deployed=True, server=url, version=version, smoke_rows=checked, skipped=None)
