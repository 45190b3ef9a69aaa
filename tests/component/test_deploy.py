"""deploy: reload a real HTTP model server (uvicorn on localhost), smoke-test it, roll back on failure.

The server here is a deliberately tiny stand-in that speaks the model server's contract
(``POST /reload`` -> ``{"version", "changed"}``, ``POST /predict`` with ``{"records": [...]}``
-> ``{"model": {...}, "predictions": [{"score", "decision"}]}``) by loading
``models:/<name>@champion``; its faults make the failure paths real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from mlflow import MlflowClient

from mlpipe.core.errors import Refused
from mlpipe.core.results import Split, Train
from mlpipe.core.settings import SERVE_TOKEN, SERVER_URL
from mlpipe.data import datasets
from mlpipe.model.tabular import TabularModel
from mlpipe.steps import run_step
from mlpipe.steps.deploy import SMOKE_ROWS, records
from mlpipe.store import audit, storage
from mlpipe.store.runs import Run
from tests.component.test_promotion_gate import aliases, register
from tests.conftest import free_port

TOKEN = "s3cret-test-token"


def tiny_app(name: str, fault: str | None = None, token: str | None = None) -> FastAPI:
    """A model server for ``name``'s champion; ``app.state.records`` holds the records last predicted. Faults:
    ``stale`` (reload does nothing), ``lying`` (reload claims the champion but keeps the old model), ``off``
    (scores shifted by 0.01)."""
    state: dict = {}

    def load() -> None:
        version = MlflowClient().get_model_version_by_alias(name, "champion")
        state.update(version=int(version.version), threshold=float(version.tags["mlpipe.threshold"]),
                     model=mlflow.pyfunc.load_model(f"models:/{name}/{version.version}").unwrap_python_model().model)

    def authorize(request: Request) -> None:
        if token and request.headers.get("authorization") != f"Bearer {token}":
            raise HTTPException(status_code=401, detail="bad or missing bearer token")

    load()
    app = FastAPI()

    @app.post("/reload")
    def reload(request: Request) -> dict:
        authorize(request)
        before = state["version"]
        if fault == "lying":
            return {"version": MlflowClient().get_model_version_by_alias(name, "champion").version, "changed": True}
        if fault != "stale":
            load()
        return {"version": state["version"], "changed": state["version"] != before}

    @app.post("/predict")
    def predict(body: dict, request: Request) -> dict:
        authorize(request)
        app.state.records = body["records"]
        scores = state["model"].scores(pd.DataFrame.from_records(body["records"])) + (0.01 if fault == "off" else 0)
        return {"model": {"name": name, "version": str(state["version"]), "alias": "champion"},
                "predictions": [{"score": float(score), "decision": bool(score >= state["threshold"])}
                                for score in scores]}

    return app


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free localhost port in a thread; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def promoted_twice(source: str, model: str) -> str:
    """Versions 1 and 2 of ``model`` (the same good model: 2 replaces 1); the run URI of version 2."""
    register(source, f"{model}_1", model)
    second = register(source, f"{model}_2", model)
    assert (second["promoted"], aliases(model)["champion"]) == (True, 2)
    return second["run"]


def test_deploy_reloads_the_server_and_checks_its_answers(analyzed_run, monkeypatch):
    register(analyzed_run, "deployed_1", "deployed_model")
    app = tiny_app("deployed_model", token=TOKEN)
    with serving(app) as url:
        uri = register(analyzed_run, "deployed_2", "deployed_model")["run"]
        monkeypatch.setenv(SERVER_URL, url)
        monkeypatch.setenv(SERVE_TOKEN, TOKEN)
        result = run_step("deploy", uri)
    assert {key: result[key] for key in ("deployed", "skipped", "server", "version", "smoke_rows")} == {
        "deployed": True, "skipped": None, "server": url, "version": 2, "smoke_rows": SMOKE_ROWS}
    assert aliases("deployed_model") == {"champion": 2, "challenger": 2, "previous-champion": 1}
    first = datasets.read(Run(uri).result(Split).analysis).head(SMOKE_ROWS)  # the set's first rows
    assert app.state.records == records(first, TabularModel.load(Run(uri).result(Train).model_folder).schema)
    event = audit.history("loan_default")[-1]
    assert (event["action"], event["model"], event["version"], event["server"]) == (
        "deployed", "deployed_model", 2, url)


def test_without_the_token_the_server_refuses_and_the_deploy_rolls_back(analyzed_run, monkeypatch):
    register(analyzed_run, "tokenless_1", "tokenless_model")
    with serving(tiny_app("tokenless_model", token=TOKEN)) as url:
        uri = register(analyzed_run, "tokenless_2", "tokenless_model")["run"]
        monkeypatch.setenv(SERVER_URL, url)
        monkeypatch.delenv(SERVE_TOKEN, raising=False)
        with pytest.raises(Refused, match=r"POST /reload: HTTPStatusError: Client error '401 Unauthorized'"):
            run_step("deploy", uri)
    assert aliases("tokenless_model") == {"champion": 1, "challenger": 2}


@pytest.mark.parametrize(("fault", "problem"), [
    ("stale", "POST /reload left the server on version 1, not the new champion 2"),
    ("lying", "POST /predict was answered by version 1, not the new champion 2"),
    ("off", "POST /predict scores differ from the model's own by up to 0.01 (> 1e-06)"),
])
def test_a_server_that_does_not_serve_the_new_champion_is_rolled_back(analyzed_run, monkeypatch, fault, problem):
    model = f"{fault}_model"
    register(analyzed_run, f"{fault}_1", model)
    with serving(tiny_app(model, fault=fault)) as url:
        uri = register(analyzed_run, f"{fault}_2", model)["run"]
        monkeypatch.setenv(SERVER_URL, url)
        with pytest.raises(Refused) as failure:
            run_step("deploy", uri)
    assert str(failure.value) == (f"deploy of {model} version 2 to {url} failed: {problem}; "
                                  "the champion alias was rolled back to version 1")
    assert aliases(model) == {"champion": 1, "challenger": 2}
    assert not storage.exists(Run(uri).path("deploy", "result.json"))
    failed, rolled = audit.history("loan_default")[-2:]
    assert (failed["action"], failed["version"], failed["problem"]) == ("deploy_failed", 2, problem)
    assert (rolled["action"], rolled["from_version"], rolled["to_version"]) == ("rollback", 2, 1)
    assert rolled["actor"] == f"deploy step of run {Run(uri).run_id}"


def test_a_server_that_is_down_fails_the_deploy_and_rolls_back(analyzed_run, monkeypatch):
    uri = promoted_twice(analyzed_run, "down_model")
    monkeypatch.setenv(SERVER_URL, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(Refused, match=r"failed: POST /reload: ConnectError: .*rolled back to version 1$"):
        run_step("deploy", uri)
    assert aliases("down_model") == {"champion": 1, "challenger": 2}


def test_a_failed_first_deploy_has_nothing_to_roll_back_to_and_says_so(analyzed_run, monkeypatch):
    uri = register(analyzed_run, "first_deploy", "first_deploy_model")["run"]
    monkeypatch.setenv(SERVER_URL, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(Refused, match="the champion alias was not rolled back: first_deploy_model has no "
                                        "previous-champion version"):
        run_step("deploy", uri)
    assert aliases("first_deploy_model") == {"champion": 1, "challenger": 1}


def test_nothing_to_deploy_without_a_server_or_a_promotion(analyzed_run, monkeypatch):
    uri = register(analyzed_run, "serverless", "serverless_model")["run"]
    monkeypatch.delenv(SERVER_URL, raising=False)
    result = run_step("deploy", uri)
    assert (result["deployed"], result["skipped"], result["server"], result["smoke_rows"]) == (
        False, f"${SERVER_URL} is not set: no model server to deploy to", None, 0)

    older = register(analyzed_run, "older", "serverless_model")["run"]  # version 2 takes over from version 1
    monkeypatch.setenv(SERVER_URL, f"http://127.0.0.1:{free_port()}")  # nothing listens: it must not be called
    result = run_step("deploy", uri)
    assert (result["deployed"], result["skipped"]) == (
        False, "version 1 is no longer the champion (now: 2): nothing to deploy")
    assert aliases("serverless_model")["champion"] == 2 and older != uri

    refused = register(analyzed_run, "refused", "refused_model", **{"thresholds.min_roc_auc": 0.99})["run"]
    result = run_step("deploy", refused)
    assert (result["deployed"], result["skipped"]) == (False, "version 1 was not promoted: nothing to deploy")
    assert aliases("refused_model") == {"challenger": 1}
