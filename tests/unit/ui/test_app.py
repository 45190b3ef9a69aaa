"""The ops app over HTTP: login required, who may roll back, the confirmation step, artifacts and metrics.

The registry is a real MLflow (SQLite) registry and the permissions are Airflow's simple auth
manager; only the logged-in user (normally the JWT the api-server checks) is given directly.
"""

from __future__ import annotations

import re
import shutil

import pytest
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from fastapi.testclient import TestClient

from mlpipe.core import uris
from mlpipe.store import audit
from mlpipe.ui import access, overview
from mlpipe.ui.app import create_app
from tests.conftest import SPEC_PATH

OPS, WATCHER = SimpleAuthManagerUser(username="ops", role="op"), SimpleAuthManagerUser(username="watcher",
                                                                                        role="viewer")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A store, an MLflow registry with versions 1 and 2 of loan_default (2 the champion) and a specs folder."""
    tmp = tmp_path_factory.mktemp("ops")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLPIPE_STORE", uris.normalize(tmp / "store"))
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        specs = tmp / "pipelines"
        specs.mkdir()
        shutil.copy(SPEC_PATH, specs / "loan_default.yaml")
        patch.setattr(overview, "pipelines_folder", lambda: specs)
        patch.setattr(overview, "training_run", lambda dag_id: None)  # no Airflow database here
        patch.setattr(access, "_team", lambda dag_id: None)
        patch.setattr("airflow.api_fastapi.app.get_auth_manager", SimpleAuthManager)
        from mlflow import MlflowClient

        client = MlflowClient()
        client.create_registered_model("loan_default", tags={"mlpipe.pipeline": "loan_default"})
        for number, auc in ((1, "0.7487"), (2, "0.7512")):
            source = tmp / f"model{number}"
            source.mkdir()
            client.create_model_version("loan_default", source.as_uri(), tags={
                "mlpipe.analysis_roc_auc": auc, "mlpipe.baseline_roc_auc": "0.7321",
                **({"mlpipe.replaced_version": "1"} if number == 2 else {})})
        client.set_registered_model_alias("loan_default", "champion", "2")
        client.set_registered_model_alias("loan_default", "previous-champion", "1")
        report = tmp / "store" / "loan_default" / "runs" / "r1" / "validate" / "report.html"
        report.parent.mkdir(parents=True)
        report.write_text("<html><body>expectations</body></html>")
        yield {"client": client, "report": report.as_uri(), "tmp": tmp}


@pytest.fixture
def http(env):
    app = create_app(secret_key="test-secret-not-a-secret")
    user = {"user": None}
    app.dependency_overrides[access.current_user] = lambda: user["user"]
    client = TestClient(app, root_path="/mlpipe")

    def as_user(who):
        user["user"] = who
        return client

    return as_user


def aliases(env) -> dict[str, str]:
    return {alias: str(v) for alias, v in env["client"].get_registered_model("loan_default").aliases.items()}


def test_nothing_without_login(http, env):
    client = http(None)
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/auth/login?next=")
    assert client.get(f"/artifact?uri={env['report']}", follow_redirects=False).status_code == 303
    assert client.post("/rollback", data={"pipeline": "loan_default", "reason": "x", "confirm": "yes"}
                       ).status_code == 401
    assert client.get("/metrics").status_code == 401
    assert aliases(env) == {"champion": "2", "previous-champion": "1"}


def test_a_viewer_sees_the_page_but_may_not_roll_back(http, env):
    client = http(WATCHER)
    page = client.get("/")
    assert page.status_code == 200 and 'data-role="champion">' in page.text and ">v2</a>" in page.text
    assert "watcher may not roll back loan_default" in page.text and 'action="/mlpipe/rollback"' not in page.text
    refused = client.post("/rollback", data={"pipeline": "loan_default", "reason": "x", "confirm": "yes"})
    assert refused.status_code == 403 and "permission to trigger the DAG loan_default_training" in refused.text
    assert aliases(env) == {"champion": "2", "previous-champion": "1"} and audit.history("loan_default") == []
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and 'mlpipe_champion_version{pipeline="loan_default"} 2.0' in metrics.text


def test_artifacts_from_the_store_only(http, env):
    client = http(WATCHER)
    served = client.get("/artifact", params={"uri": env["report"]})
    assert served.status_code == 200 and served.text == "<html><body>expectations</body></html>"
    assert served.headers["content-security-policy"].startswith("sandbox")
    outside = env["report"].replace("/store/", "/store/../")
    assert client.get("/artifact", params={"uri": outside}).status_code == 400
    missing = env["report"].replace("report.html", "gone.html")
    assert client.get("/artifact", params={"uri": missing}).status_code == 404


def test_rollback_asks_for_confirmation_then_does_it_as_the_user(http, env):
    client = http(OPS)
    assert 'action="/mlpipe/rollback"' in client.get("/").text
    form = {"pipeline": "loan_default", "reason": "bad batch <b>"}
    asked = client.post("/rollback", data=form)
    assert asked.status_code == 200 and "from <b>v2</b> to <b>v1</b>" in asked.text
    assert "bad batch &lt;b&gt;" in asked.text
    assert aliases(env) == {"champion": "2", "previous-champion": "1"}  # nothing happens before the confirmation
    token = re.search(r'name="token" value="([^"]+)"', asked.text).group(1)
    for bad in ({**form, "confirm": "yes"}, {**form, "confirm": "yes", "token": token + "x"}):
        assert client.post("/rollback", data=bad).status_code == 400
    assert http(SimpleAuthManagerUser(username="other", role="op")).post(
        "/rollback", data={**form, "confirm": "yes", "token": token}).status_code == 400  # not their confirmation
    assert aliases(env) == {"champion": "2", "previous-champion": "1"}
    done = http(OPS).post("/rollback", data={**form, "confirm": "yes", "token": token})
    assert done.status_code == 200 and "champion is now version 1 (was 2)" in done.text
    assert aliases(env) == {"champion": "1"}
    [event] = audit.history("loan_default")
    assert (event["action"], event["actor"], event["reason"], event["to_version"]) == ("rollback", "ops",
                                                                                       "bad batch <b>", 1)
    again = client.post("/rollback", data={**form, "confirm": "yes", "token": token})
    assert again.status_code == 409 and "no champion and previous champion" in again.text
    assert "Traceback" not in again.text

