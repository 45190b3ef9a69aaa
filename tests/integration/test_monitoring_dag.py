"""The monitoring DAG run for real through Airflow (`airflow dags test`): no drift, no retraining;
planted drift, a breach that triggers the training DAG with the reasons in its run conf."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mlpipe.core import uris, urls
from mlpipe.core.results import Monitor
from mlpipe.steps import run_step
from mlpipe.store import runs, storage
from mlpipe.store.runs import Run
from tests.conftest import DATA_PATH, airflow_env
from tests.fixtures.analysis import TRAINED, run_steps, start
from tests.unit.orchestration.test_alerts import HttpReceiver

pytestmark = pytest.mark.integration
DAG_ID = "loan_default_monitoring"


@pytest.fixture(scope="module")
def receiver():
    """A real webhook receiver: the alert connection of the module's Airflow points at it."""
    with HttpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, module_env, receiver):
    """``airflow <args>`` in a migrated home of this module, with the module's store and MLflow."""
    home = tmp_path_factory.mktemp("airflow")
    env = airflow_env(home, **module_env, AIRFLOW_CONN_MLPIPE_ALERTS_WEBHOOK=f"{receiver.url}/hooks/ops")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True,
                              timeout=600)

    run.home = home
    done = run("db", "migrate")
    assert done.returncode == 0, done.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def champion(module_env) -> str:
    uri = run_steps(start("champion", **{"tuning.enabled": False}), TRAINED)
    storage.write_json(uris.join(uri, runs.OPTIONS), {"force_promote": True})
    assert run_step("register", uri)["promoted"]
    return uri


def score(champion: str, tmp_path, frame: pd.DataFrame, run_id: str) -> None:
    path = tmp_path / f"{run_id}.csv"
    frame.drop(columns=["Class"]).to_csv(path, index=False)
    run_step("score", runs.start(Run(champion).spec, run_id, options={"input_uri": path.as_uri()},
                                 kind=runs.SCORING))


def listing(out: subprocess.CompletedProcess) -> list[dict]:
    """The JSON table an ``airflow ... -o json`` command printed (after any warnings it logged first)."""
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout[re.search(r"^\[", out.stdout, re.MULTILINE).start():])


def dag_runs(airflow, dag_id: str) -> list[dict]:
    """The runs of ``dag_id``; none while the DAG was never run (it is not in the database yet)."""
    out = airflow("dags", "list-runs", dag_id, "-o", "json")
    return [] if "does not exist in 'dag' table" in out.stderr else listing(out)


def task_states(airflow, run_id: str) -> dict[str, str]:
    return {row["task_id"]: row["state"]
            for row in listing(airflow("tasks", "states-for-dag-run", DAG_ID, run_id, "-o", "json"))}


def monitoring_run(airflow) -> tuple[Monitor, dict[str, str]]:
    before = {run["run_id"] for run in dag_runs(airflow, DAG_ID)}
    out = airflow("dags", "test", DAG_ID)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    (run_id,) = {run["run_id"] for run in dag_runs(airflow, DAG_ID)} - before
    result = Run(runs.run_uri("loan_default", run_id, kind=runs.MONITORING)).result(Monitor)
    return result, task_states(airflow, run_id)


def test_drift_triggers_training_and_no_drift_does_not(airflow, receiver, champion, tmp_path):
    loans = pd.read_csv(DATA_PATH)
    rng = np.random.default_rng(0)
    score(champion, tmp_path, loans.iloc[rng.integers(0, len(loans), 3000)], "steady")
    result, states = monitoring_run(airflow)
    assert (result.status, result.breach) == ("ok", False)
    assert states["monitor_drift"] == "success"
    assert states["check_breach"] == "success"
    assert states["trigger_training"] == states["alert_breach"] == "skipped"
    assert dag_runs(airflow, "loan_default_training") == [] and receiver.requests == []

    shifted = loans.iloc[rng.integers(0, len(loans), 3000)].copy()
    shifted["int_rate"] += 2 * loans["int_rate"].std()
    score(champion, tmp_path, shifted, "shifted")
    result, states = monitoring_run(airflow)
    assert result.breach and "int_rate" in result.drifting_features
    assert states["trigger_training"] == states["alert_breach"] == "success"
    ((path, alert),) = receiver.requests
    assert path == "/hooks/ops" and "monitoring breach of loan_default v1" in alert["text"]
    assert all(reason in alert["text"] for reason in result.reasons)
    assert urls.artifact_url(result.report_html, base="http://localhost:8080") in alert["text"]  # via the ops view
    (triggered,) = dag_runs(airflow, "loan_default_training")
    with sqlite3.connect(airflow.home / "airflow.db") as database:  # the CLI does not print a run's conf
        (conf,), = database.execute("select conf from dag_run where run_id = ?", (triggered["run_id"],))
    conf = json.loads(conf)
    assert conf == {"notes": result.retrain_notes}
    assert conf["notes"].startswith("monitoring breach of loan_default v1") and "int_rate" in conf["notes"]
