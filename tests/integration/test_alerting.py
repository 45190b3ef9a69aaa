"""Alerts from real Airflow runs: a failing training DAG run (`airflow dags test`), a missed deadline, and
a successful `airflow dags test` of a DAG that has a deadline alert.

The webhook receiver (``http.server``) and the SMTP server (``aiosmtpd``) are real servers on free
local ports; Airflow reaches them through ``AIRFLOW_CONN_*`` connections, as it would in production.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT, SPEC_PATH, airflow_env
from tests.unit.orchestration.test_alerts import HttpReceiver, SmtpSink

pytestmark = pytest.mark.integration
DAG_ID = "loan_default_training"
RECIPIENTS = ["oncall@example.com", "ml-team@example.com"]

# Runs in the Airflow environment after the failed run. Reports the failed run's id, then does what
# the scheduler and the triggerer do for an overdue run: a new queued run of the DAG gets its
# Deadline from the DAG's DeadlineAlert (Airflow computes it), time passes (the deadline is moved
# into the past), the scheduler's query finds it and `Deadline.handle_miss` queues the callback's
# trigger, and the trigger runs as the triggerer builds it from its stored row.
DEADLINE_SCRIPT = """
import asyncio, json, sys
from datetime import timedelta
from sqlalchemy import select
from airflow._shared.module_loading import import_string
from airflow.models import DagRun, Deadline, Trigger
from airflow.models.dagbag import DBDagBag
from airflow.serialization.decoders import smart_decode_trigger_kwargs
from airflow.utils import timezone
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from airflow.utils.types import DagRunTriggeredByType, DagRunType

dag_id = sys.argv[1]
with create_session() as session:
    failed = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id)).one()
    report = {"failed_run_id": failed.run_id, "failed_state": str(failed.state)}
    dag = DBDagBag().get_latest_version_of_dag(dag_id, session=session)
    run = dag.create_dagrun(run_id="manual__overdue", run_after=timezone.utcnow(), run_type=DagRunType.MANUAL,
                            triggered_by=DagRunTriggeredByType.TEST, state=DagRunState.QUEUED, session=session)
    session.flush()
    [deadline] = session.scalars(select(Deadline).where(Deadline.dagrun_id == run.id)).all()
    report["deadline_after_queued_minutes"] = (deadline.deadline_time - run.queued_at).total_seconds() / 60
    deadline.deadline_time = timezone.utcnow() - timedelta(seconds=1)  # time passes
    session.flush()
    for missed in session.scalars(select(Deadline).where(Deadline.deadline_time < timezone.utcnow())
                                  .where(~Deadline.missed)):
        missed.handle_miss(session)
    session.flush()
    row = session.get(Trigger, deadline.callback.trigger_id)
    kwargs = {k: smart_decode_trigger_kwargs(v) for k, v in Trigger._decrypt_kwargs(row.encrypted_kwargs).items()}
    trigger = import_string(row.classpath)(**kwargs)

async def events():
    return [event.payload async for event in trigger.run()]

report["events"] = [{k: str(v) for k, v in payload.items()} for payload in asyncio.run(events())]
print(json.dumps(report))
"""

# Runs in the Airflow environment after a `dags test`: the deadline alerts of the DAG the scheduler reads.
STORED_DEADLINES_SCRIPT = """
import json, sys
from airflow.models.dagbag import DBDagBag
from airflow.models.deadline_alert import DeadlineAlert
from airflow.utils.session import create_session

with create_session() as session:
    dag = DBDagBag().get_latest_version_of_dag(sys.argv[1], session=session)
    alerts = [DeadlineAlert.get_by_id(alert_id, session=session) for alert_id in dag.deadline or []]
    print(json.dumps([{"name": a.name, "reference": a.reference_class.__name__,
                       "seconds": a.interval["__data__"]} for a in alerts]))
"""


@pytest.fixture
def dags_folder(tmp_path):
    """The project's DAG file and spec, with ``alerts.email_to`` set, in a folder of their own."""
    folder = tmp_path / "dags"
    pipelines = folder / "pipelines"
    pipelines.mkdir(parents=True)
    shutil.copy(ROOT / "dags" / "mlpipe_pipelines.py", folder)
    document = yaml.safe_load(SPEC_PATH.read_text())
    document["alerts"]["email_to"] = RECIPIENTS
    (pipelines / SPEC_PATH.name).write_text(yaml.safe_dump(document, sort_keys=False))
    for name in ("data", "loan_default.profile.json"):
        (pipelines / name).symlink_to(SPEC_PATH.parent / name)
    return folder


def test_failed_run_and_missed_deadline_alert_ops(tmp_path, pipeline_env, dags_folder):
    home = tmp_path / "airflow"
    home.mkdir()
    missing = tmp_path / "missing.csv"
    with HttpReceiver() as receiver, SmtpSink() as smtp:
        env = airflow_env(home, dags_folder, **pipeline_env,
                          AIRFLOW_CONN_MLPIPE_ALERTS_WEBHOOK=f"{receiver.url}/hooks/ops",
                          AIRFLOW_CONN_SMTP_DEFAULT=smtp.conn_uri("airflow@example.com"),
                          AIRFLOW__API__BASE_URL="https://airflow.example.com")
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                       capture_output=True, timeout=300)
        out = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "-c",
                              json.dumps({"data_uri": missing.as_uri()})],
                             env=env, capture_output=True, text=True, timeout=300)
        log = out.stdout + out.stderr
        (tmp_path / "dags_test.log").write_text(log)
        assert out.returncode != 0, log[-3000:]
        failed_alerts = list(receiver.texts())
        failed_mail = list(smtp.messages)

        script = subprocess.run([sys.executable, "-c", DEADLINE_SCRIPT, DAG_ID], env=env, capture_output=True,
                                text=True, timeout=120)
        assert script.returncode == 0, script.stderr[-3000:]
        report = json.loads(script.stdout.strip().splitlines()[-1])
        overdue_alerts = receiver.texts()[len(failed_alerts):]
        overdue_mail = smtp.messages[len(failed_mail):]

    run_id = report["failed_run_id"]
    assert report["failed_state"] == "failed"
    # The task's own alert (after its only try: a refused input is not retried) and the run's.
    assert len(failed_alerts) == 2, (failed_alerts, log[-5000:])
    task_alert, run_alert = failed_alerts
    assert task_alert.startswith(f"{DAG_ID}: task ingest_data failed\n"), task_alert
    for line in ("Pipeline: loan_default", f"DAG: {DAG_ID}", "Task: ingest_data", f"Run: {run_id}", "Try: 1",
                 "step ingest refused its input:", "missing.csv: no such file",
                 f"Task log: https://airflow.example.com/dags/{DAG_ID}/runs/"):
        assert line in task_alert, line
    assert "/tasks/ingest_data?try_number=1" in task_alert
    assert run_alert.startswith(f"{DAG_ID}: run {run_id} failed\n"), run_alert
    assert "Task: ingest_data" in run_alert and "Reason: task_failure" in run_alert
    subjects = [message["Subject"] for *_, message in failed_mail]
    assert subjects == [f"[mlpipe] {DAG_ID}: task ingest_data failed", f"[mlpipe] {DAG_ID}: run {run_id} failed"]
    sender, recipients, message = failed_mail[0]
    assert (sender, recipients) == ("airflow@example.com", RECIPIENTS)
    assert "missing.csv: no such file" in SmtpSink.body(message)

    # The missed deadline: 240 minutes after queueing (the spec's alerts.deadline_minutes.training).
    assert report["deadline_after_queued_minutes"] == pytest.approx(240)
    assert [event["state"] for event in report["events"]] == ["running", "success"]
    [overdue] = overdue_alerts
    assert overdue.startswith(f"{DAG_ID} still running after 240 minutes\n")
    assert "Run: manual__overdue" in overdue and "State: queued" in overdue
    assert [message["Subject"] for *_, message in overdue_mail] == [
        f"[mlpipe] {DAG_ID} still running after 240 minutes"]


def test_dags_test_of_a_dag_with_a_deadline_succeeds_and_the_scheduler_keeps_it(tmp_path, pipeline_env):
    """`airflow dags test` of a DAG with a deadline alert exits 0 once its run succeeded (in Airflow 3.3.2
    the run's last state update failed it: ``'dict' object has no attribute 'hex'``), with no environment
    variable to set; the DAG stored for the scheduler still carries its deadline alert."""
    home = tmp_path / "airflow"
    home.mkdir()
    env = airflow_env(home, **pipeline_env)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True,
                   capture_output=True, timeout=300)
    # Every task marked successful without running: the run succeeds, which is where the bug was.
    out = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "--mark-success-pattern", ".*"],
                         env=env, capture_output=True, text=True, timeout=300)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "Marking run <DagRun loan_default_training" in log and "Traceback" not in log, log[-3000:]

    stored = subprocess.run([sys.executable, "-c", STORED_DEADLINES_SCRIPT, DAG_ID], env=env, capture_output=True,
                            text=True, timeout=120)
    assert stored.returncode == 0, stored.stderr[-3000:]
    assert json.loads(stored.stdout.strip().splitlines()[-1]) == [
        {"name": "loan_default_training overdue", "reference": "DagRunQueuedAtDeadline", "seconds": 240 * 60}]
