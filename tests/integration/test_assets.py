"""The pipeline's DAGs chained by data, for real: Airflow's scheduler and api-server (LocalExecutor, SQLite).

The module runs a deployment with its own DAGs folder: the project's DAG files and the reference spec
made to run on assets (``on_assets``: training on ``training_data``, scoring on ``incoming_batch``,
monitoring on ``predictions`` or a cron that does not fire during the test, i.e. an
``AssetOrTimeSchedule``). Nothing triggers a DAG by hand:

- an external system (a user with role ``op``) announces new training data through the REST API
  (``POST /api/v2/assets/events``, the asset's id found by ``GET /api/v2/assets?uri_pattern=...``); the
  scheduler runs the training DAG on that file, which promotes a champion and emits the ``champion``
  event with its metadata;
- it announces a batch the same way; the scoring DAG scores exactly that file and its ``predictions``
  event, with the batch's metadata, makes the scheduler run the monitoring DAG, whose report lands as a
  ``monitoring_report`` event;
- ``airflow assets list`` (what the Assets view and lineage graph show) names each asset's producing
  tasks, consuming tasks and the DAGs it schedules.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml
from mlflow import MlflowClient

from mlpipe.core import assets
from mlpipe.core.results import Analyze, Ingest, Monitor, Register, Score
from mlpipe.registry.tracking import NOTES_TAG
from mlpipe.store import runs
from tests import services
from tests.conftest import DATA_PATH, SPEC_PATH, airflow_env

pytestmark = pytest.mark.integration
PIPELINE = "loan_default"
TRAINING, SCORING, MONITORING = (f"{PIPELINE}_{kind}" for kind in ("training", "scoring", "monitoring"))
USERS = {services.ADMIN: "admin", "feeder": "op", "watcher": "viewer"}  # feeder: the external system's user
NEVER_HERE = "0 0 29 2 *"  # monitoring's cron: Feb 29, after the spec's start date, so no run during the test
RUN_TIMEOUT = 600


def chained_spec(pipelines: Path) -> None:
    """The reference spec, its profile and data in ``pipelines``, its DAGs run by asset events (no tuning)."""
    (pipelines / "data").mkdir(parents=True)
    shutil.copy(DATA_PATH, pipelines / "data")
    shutil.copy(SPEC_PATH.with_name(f"{PIPELINE}.profile.json"), pipelines)
    document = yaml.safe_load(SPEC_PATH.read_text())
    document.update(schedule=None, on_assets=["training_data"])
    document["tuning"]["enabled"] = False
    document["thresholds"]["min_lift_over_baseline"] = -1.0  # the first model is promoted without force
    document["scoring"].update(schedule=None, on_assets=["incoming_batch"])
    document["monitoring"].update(schedule=NEVER_HERE, on_assets=["predictions"])
    (pipelines / SPEC_PATH.name).write_text(yaml.safe_dump(document, sort_keys=False))


@dataclass
class Deployment:
    """The running Airflow (REST API as admin, processes), its users' passwords and the module's folder."""

    airflow: services.Airflow
    passwords: dict[str, str]
    folder: Path

    def token(self, user: str) -> str:
        """``POST /auth/token``: the JWT an external system sends as ``Authorization: Bearer``."""
        response = requests.post(f"{self.airflow.url}/auth/token", timeout=30,
                                 json={"username": user, "password": self.passwords[user]})
        assert response.status_code == 201, response.text
        return response.json()["access_token"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, module_env):
    """A running Airflow (api-server and scheduler) over this module's DAGs folder, store and MLflow."""
    folder = tmp_path_factory.mktemp("assets")
    dags, home = folder / "dags", folder / "airflow"
    (dags / "pipelines").mkdir(parents=True)
    home.mkdir()
    for dag_file in SPEC_PATH.parents[1].glob("*.py"):
        shutil.copy(dag_file, dags)
    chained_spec(dags / "pipelines")
    port, passwords = services.free_port(), {user: secrets.token_urlsafe(10) for user in USERS}
    (home / "passwords.json").write_text(json.dumps(passwords))
    env = airflow_env(
        home, dags, **module_env,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=",".join(f"{user}:{role}" for user, role in USERS.items()),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__CORE__EXECUTOR="LocalExecutor", AIRFLOW__CORE__PARALLELISM="2",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}", AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__SECRET_KEY=secrets.token_hex(16), AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"), MLPIPE_RUNTIME="local",
    )
    airflow = services.Airflow(home, env, port, passwords[services.ADMIN])
    try:
        airflow.airflow("db", "migrate")
        airflow.airflow("dags", "reserialize")  # the DAGs, their assets and schedules into the database
        for name, *args in (("api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
                            ("scheduler",)):
            airflow.services[name] = services.spawn(f"airflow {name}", [str(services.BIN / "airflow"), name, *args],
                                                    home / "logs" / f"{name}.log", env=env, cwd=home)
        airflow.services["api-server"].wait_for(
            lambda: services.http_ok(f"{airflow.url}/api/v2/monitor/health"), "answering its health check", 180)
        airflow.services["scheduler"].wait_for(lambda: airflow.healthy("scheduler"), "healthy", 180)
        yield Deployment(airflow, passwords, folder)
    finally:
        airflow.stop()


def asset_id(airflow, key: str) -> int:
    """The id of the pipeline's asset ``key``, as an external system finds it (by its URI)."""
    found = airflow.api("GET", "assets", params={"uri_pattern": assets.asset_uri(PIPELINE, key)})["assets"]
    (only,) = [asset for asset in found if asset["uri"] == assets.asset_uri(PIPELINE, key)]
    return only["id"]


def post_event(deployment: Deployment, key: str, extra: dict, user: str | None) -> requests.Response:
    """``POST /api/v2/assets/events`` for the pipeline's asset ``key`` as ``user`` (``None``: without a token)."""
    headers = {"Authorization": f"Bearer {deployment.token(user)}"} if user else {}
    return requests.post(f"{deployment.airflow.url}/api/v2/assets/events", timeout=30, headers=headers,
                         json={"asset_id": asset_id(deployment.airflow, key), "extra": extra})


def announce(deployment: Deployment, key: str, extra: dict) -> dict:
    """What an external system does when it has new data: the event, posted as user ``feeder`` (role op)."""
    response = post_event(deployment, key, extra, "feeder")
    assert response.status_code == 200, response.text
    return response.json()


def events(airflow, key: str) -> list[dict]:
    """The events of the pipeline's asset ``key``, oldest first."""
    return airflow.api("GET", "assets/events", params={"asset_id": asset_id(airflow, key),
                                                       "order_by": "timestamp"})["asset_events"]


def dag_runs(airflow, dag_id: str) -> list[dict]:
    return airflow.api("GET", f"dags/{dag_id}/dagRuns")["dag_runs"]


def wait_for_run(airflow, dag_id: str) -> dict:
    """The DAG's one run once the scheduler made it (from an asset event) and it succeeded; the test fails on a
    failed run, with its task states and logs."""
    deadline, found = time.monotonic() + RUN_TIMEOUT, []
    while time.monotonic() < deadline:
        found = dag_runs(airflow, dag_id)
        if found and found[-1]["state"] in ("success", "failed"):
            break
        time.sleep(2)
    assert len(found) == 1 and found[0]["state"] == "success", (
        f"{dag_id}: runs {[(run['dag_run_id'], run['state']) for run in found]}\n{diagnosis(airflow, dag_id)}")
    return found[0]


def diagnosis(airflow, dag_id: str) -> str:
    """The task states of ``dag_id``'s runs, the end of each task log and of each process's log."""
    lines = []
    for run in dag_runs(airflow, dag_id):
        tasks = airflow.api("GET", f"dags/{dag_id}/dagRuns/{run['dag_run_id']}/taskInstances")["task_instances"]
        lines += [f"  {task['task_id']} {task['state']}" for task in tasks]
    for log in sorted((airflow.home / "logs").glob(f"dag_id={dag_id}/**/*.log")):
        lines += [f"--- {log}", *log.read_text(errors="replace").splitlines()[-30:]]
    return "\n".join(lines) + "\n" + airflow.log_tails()


def cli_json(airflow, *args: str) -> list[dict]:
    """The JSON table an ``airflow ... -o json`` command prints (after any warnings it logged first)."""
    out = airflow.airflow(*args, "-o", "json").stdout
    return json.loads(out[re.search(r"^\[", out, re.MULTILINE).start():])


def test_the_lineage_lists_each_assets_producers_consumers_and_the_dags_it_runs(deployment):
    listed = {asset["name"]: asset for asset in cli_json(deployment.airflow, "assets", "list", "--columns",
                                                          "name,uri,producing_tasks,consuming_tasks,scheduled_dags")}
    lineage = {name: ({(ref["dag_id"], ref["task_id"]) for ref in asset["producing_tasks"]},
                      {(ref["dag_id"], ref["task_id"]) for ref in asset["consuming_tasks"]},
                      {ref["dag_id"] for ref in asset["scheduled_dags"]})
               for name, asset in listed.items()}
    assert lineage == {
        "loan_default.training_data": (set(), {(TRAINING, "ingest_data")}, {TRAINING}),
        "loan_default.incoming_batch": (set(), set(), {SCORING}),
        "loan_default.champion": ({(TRAINING, "publish_champion")}, set(), set()),
        "loan_default.predictions": ({(SCORING, "score_batch")}, set(), {MONITORING}),
        "loan_default.monitoring_report": ({(MONITORING, "monitor_drift")}, set(), set()),
    }
    assert {listed[assets.asset_name(PIPELINE, key)]["uri"] for key in assets.AssetKey} == {
        assets.asset_uri(PIPELINE, key) for key in assets.AssetKey}


def test_only_a_user_with_role_op_may_announce_data(deployment):
    before = events(deployment.airflow, "incoming_batch")
    extra = {"uri": "file:///nowhere.csv"}
    assert post_event(deployment, "incoming_batch", extra, None).status_code == 401
    assert post_event(deployment, "incoming_batch", extra, "watcher").status_code == 403  # a viewer
    assert events(deployment.airflow, "incoming_batch") == before
    assert dag_runs(deployment.airflow, SCORING) == []


def test_announced_data_runs_training_then_scoring_then_monitoring(deployment):
    airflow = deployment.airflow
    # New training data, announced by an external system: the scheduler runs the training DAG on that file.
    november = deployment.folder / "november.csv"
    shutil.copy(DATA_PATH, november)
    announce(deployment, "training_data", {"uri": november.as_uri(), "notes": "November book"})
    trained = wait_for_run(airflow, TRAINING)
    assert trained["run_type"] == "asset_triggered"
    run = runs.Run(runs.run_uri(PIPELINE, trained["dag_run_id"]))
    assert run.options["data_uri"] == november.as_uri() == run.spec.data.source == run.result(Ingest).source
    (announced,) = run.options["asset_events"]
    assert announced["extra"] == {"uri": november.as_uri(), "notes": "November book", "from_rest_api": True}
    registered = run.result(Register)
    assert registered.promoted and registered.version == 1
    version = MlflowClient().get_model_version(PIPELINE, str(registered.version))
    assert version.tags[NOTES_TAG] == "November book"  # the announcement's notes, on the model version

    # The promotion's champion event, with the version's data, metrics and reasons.
    (champion,) = events(airflow, "champion")
    assert (champion["source_dag_id"], champion["source_task_id"], champion["source_run_id"]) == (
        TRAINING, "publish_champion", trained["dag_run_id"])
    assert champion["extra"] == {
        "model": PIPELINE, "version": 1, "previous_version": None, "data_version": run.result(Ingest).data_version,
        "rows": run.result(Ingest).rows, "metrics": run.result(Analyze).metrics, "forced": False,
        "reasons": registered.reasons, "deployed": False, "run": run.uri}

    # A batch, announced the same way: the scoring DAG scores exactly that file.
    batch = deployment.folder / "applications-2026-12-06.csv"
    pd.read_csv(DATA_PATH).drop(columns=["Class"]).sample(2000, random_state=3).to_csv(batch, index=False)
    posted = announce(deployment, "incoming_batch", {"uri": batch.as_uri()})
    scored_run = wait_for_run(airflow, SCORING)
    scoring = runs.Run(runs.run_uri(PIPELINE, scored_run["dag_run_id"], kind=runs.SCORING))
    scored = scoring.result(Score)
    assert (scoring.options["input_uris"], scored.source) == ([batch.as_uri()], batch.as_uri())
    assert (scored.rows, scored.model_version) == (2000, 1)
    upstream = airflow.api("GET", f"dags/{SCORING}/dagRuns/{scored_run['dag_run_id']}/upstreamAssetEvents")
    assert [event["id"] for event in upstream["asset_events"]] == [posted["id"]]

    # Its predictions event carries the batch's metadata and runs the monitoring DAG. (Its events are read once
    # that run has started: Airflow's GET /assets/events answers 500 while a run it created is queued, whose
    # start_date is still null.)
    monitored_run = wait_for_run(airflow, MONITORING)
    (predictions,) = events(airflow, "predictions")
    assert (predictions["source_dag_id"], predictions["source_task_id"]) == (SCORING, "score_batch")
    assert predictions["extra"] == assets.predictions_event(scored) and predictions["extra"]["rows"] == 2000
    assert monitored_run["run_type"] == "asset_triggered"
    upstream = airflow.api("GET", f"dags/{MONITORING}/dagRuns/{monitored_run['dag_run_id']}/upstreamAssetEvents")
    assert [event["id"] for event in upstream["asset_events"]] == [predictions["id"]]
    monitored = runs.Run(runs.run_uri(PIPELINE, monitored_run["dag_run_id"], kind=runs.MONITORING)).result(Monitor)
    assert (monitored.status, monitored.breach, monitored.champion_version) == ("ok", False, 1)
    (report,) = events(airflow, "monitoring_report")
    assert (report["source_dag_id"], report["source_task_id"]) == (MONITORING, "monitor_drift")
    assert report["extra"] == assets.report_event(monitored)
    assert [len(dag_runs(airflow, dag_id)) for dag_id in (TRAINING, SCORING, MONITORING)] == [1, 1, 1]
