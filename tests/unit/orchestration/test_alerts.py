"""Alerts: message content, the webhook's JSON, delivery to a real HTTP receiver and a real SMTP server.

The receivers are real servers on free local ports: an ``http.server`` in a thread (answering 200 or
500) and an ``aiosmtpd`` SMTP server. Connections come from ``AIRFLOW_CONN_*`` variables, as Airflow
resolves them in a task. The integration test imports the receivers from here.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from airflow.sdk import Connection

from mlpipe.core import spec, urls
from mlpipe.core.names import Step
from mlpipe.core.settings import MLFLOW_UI
from mlpipe.orchestration import alerts, callbacks, factory
from mlpipe.store import runs, storage
from tests.conftest import SPEC_PATH, free_port
from tests.result_examples import stored

RUN_ID = "manual__2026-11-23T17:59:31.734240+00:00"


class HttpReceiver:
    """A real HTTP server in a thread that records every POST (path, JSON body) and answers ``status``."""

    def __init__(self, status: int = 200):
        self.status = status
        self.requests: list[tuple[str, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((self.path, json.loads(body)))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"ok" if receiver.status == 200 else b"boom")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HttpReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def texts(self) -> list[str]:
        return [body["text"] for _, body in self.requests]


class SmtpSink:
    """A real SMTP server (aiosmtpd) on a free port that keeps every message it accepts."""

    def __init__(self):
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                sink.messages.append((envelope.mail_from, list(envelope.rcpt_tos), message))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    def conn_uri(self, sender: str = "mlpipe@example.com") -> str:
        """The ``AIRFLOW_CONN_SMTP_DEFAULT`` value for this server (plain SMTP: no TLS, no SSL)."""
        return (f"smtp://127.0.0.1:{self.port}?disable_tls=true&disable_ssl=true&timeout=10&retry_limit=0"
                f"&from_email={sender.replace('@', '%40')}")

    @staticmethod
    def body(message: email.message.EmailMessage) -> str:
        return "".join(part.get_content() for part in message.walk() if part.get_content_type() == "text/html")


@pytest.fixture
def receiver():
    with HttpReceiver() as server:
        yield server


@pytest.fixture
def smtp():
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def settings() -> spec.Alerts:
    return spec.Alerts(email_to=["oncall@example.com", "ml@example.com"])


@pytest.fixture
def connections(monkeypatch, receiver, smtp):
    """The webhook and SMTP connections as environment variables, pointing at the real receivers."""
    monkeypatch.setenv("AIRFLOW_CONN_MLPIPE_ALERTS_WEBHOOK", f"{receiver.url}/services/T0/B0")
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp.conn_uri())
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    monkeypatch.setenv(MLFLOW_UI, "https://mlflow.example.com")


def failed_ti(task_id: str = "ingest_data", try_number: int = 1, map_index: int = -1):
    """A task instance as Airflow hands it to callbacks (the Task SDK's RuntimeTaskInstance)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    return RuntimeTaskInstance.model_construct(dag_id="loan_default_training", run_id=RUN_ID, task_id=task_id,
                                               try_number=try_number, map_index=map_index)


def training_run_with_mlflow(mlflow_run_id: str = "3fbc851a22c34740be01bd9ca4a2fcb0") -> str:
    """A training run folder of the bundled spec whose train step finished with an MLflow run."""
    uri = runs.start(spec.load(SPEC_PATH), RUN_ID)
    storage.write_json(runs.Run(uri).path("train", runs.RESULT),
                       {**stored(Step.TRAIN, uri), "mlflow_run_id": mlflow_run_id})
    return uri


# --- message content ---------------------------------------------------------------------------------

def test_task_failure_alert_names_pipeline_dag_task_run_try_error_and_links(pipeline_env, connections):
    training_run_with_mlflow()
    error = RuntimeError("step analyze refused its input:\nanalysis set has no positives\n"
                         + "\n".join(f"detail {i}" for i in range(40)))
    ti = failed_ti("analyze_model", try_number=3)
    alert = callbacks.task_failure_alert("loan_default", runs.TRAINING, {"ti": ti, "run_id": RUN_ID,
                                                                        "exception": error})
    assert alert.title == "loan_default_training: task analyze_model failed"
    assert alert.fields == {"Pipeline": "loan_default", "DAG": "loan_default_training", "Task": "analyze_model",
                            "Run": RUN_ID, "Try": "3"}
    assert alert.error.startswith("step analyze refused its input:\nanalysis set has no positives\ndetail 0")
    assert "detail 12" in alert.error and "detail 13" not in alert.error  # the first 15 lines
    assert "(27 more lines in the task log)" in alert.error
    # The log link is exactly the one Airflow itself builds for this try.
    assert alert.links["Task log"] == ti.log_url == (
        "https://airflow.example.com/dags/loan_default_training/runs/manual__2026-11-23T17%3A59%3A31.734240"
        "%2B00%3A00/tasks/analyze_model?try_number=3")
    assert alert.links["MLflow run"] == "https://mlflow.example.com/#/runs/3fbc851a22c34740be01bd9ca4a2fcb0"


def test_mapped_task_link_and_no_mlflow_link_before_training(pipeline_env, connections):
    runs.start(spec.load(SPEC_PATH), RUN_ID)  # nothing trained yet
    ti = failed_ti("tune_trials", try_number=2, map_index=1)
    alert = callbacks.task_failure_alert("loan_default", runs.TRAINING, {"ti": ti, "exception": None})
    assert alert.fields["Task"] == "tune_trials[1]"
    assert alert.links == {"Task log": ti.log_url}
    assert alert.links["Task log"].endswith("/tasks/tune_trials/mapped/1?try_number=2")
    assert alert.error == "(no exception recorded; see the task log)"


def test_ui_links_default_to_localhost(pipeline_env, monkeypatch):
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    monkeypatch.delenv(MLFLOW_UI, raising=False)
    assert callbacks.airflow_ui_base() == "http://localhost:8080"
    assert urls.mlflow_run_url("abc") == "http://localhost:5000/#/runs/abc"
    assert alerts.dag_run_url("http://localhost:8080/", "d", "r 1") == "http://localhost:8080/dags/d/runs/r%201"


def test_run_failure_alert_from_a_dag_callback_context(pipeline_env, connections):
    training_run_with_mlflow("feedbeef")
    dag = factory.training_dag(SPEC_PATH)
    context = {"dag": dag, "run_id": RUN_ID, "reason": "task_failure", "ti": failed_ti("register_model", 1)}
    alert = callbacks.run_failure_alert("loan_default", runs.TRAINING, context)
    assert alert.title == f"loan_default_training: run {RUN_ID} failed"
    assert alert.fields["Reason"] == "task_failure" and alert.fields["Task"] == "register_model"
    assert alert.links["DAG run"].startswith("https://airflow.example.com/dags/loan_default_training/runs/manual__")
    assert alert.links["Task log"].endswith("/tasks/register_model?try_number=1")
    assert alert.links["MLflow run"].endswith("/#/runs/feedbeef")


def test_webhook_payload_is_slack_shaped():
    alert = alerts.Alert(title="x" * 200, fields={"Pipeline": "p", "Run": "r"}, error="Boom\nline 2",
                         links={"Task log": "http://a/b"}, text="PSI 0.4 on int_rate")
    payload = json.loads(json.dumps(alert.webhook_payload()))  # JSON-serializable as it is
    assert payload["text"] == alert.plain_text()
    for part in ("Pipeline: p", "Run: r", "PSI 0.4 on int_rate", "Error:\nBoom\nline 2", "Task log: http://a/b"):
        assert part in payload["text"]
    header, fields, text, error, links = payload["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "x" * 149 + "…"}}
    assert fields["fields"] == [{"type": "mrkdwn", "text": "*Pipeline*\np"}, {"type": "mrkdwn", "text": "*Run*\nr"}]
    assert text["text"]["text"] == "PSI 0.4 on int_rate"
    assert error["text"]["text"] == "```Boom\nline 2```"
    assert links == {"type": "context", "elements": [{"type": "mrkdwn", "text": "<http://a/b|Task log>"}]}


def test_email_body_escapes_html():
    alert = alerts.Alert(title="t <b>", fields={"Task": "<script>"}, error="a < b")
    body = alert.email_html()
    assert "&lt;script&gt;" in body and "<pre>a &lt; b</pre>" in body and "<script>" not in body
    assert alert.email_subject() == "[mlpipe] t <b>"


@pytest.mark.parametrize(("conn", "url"), [
    (Connection.from_uri("http://127.0.0.1:8000/hook/path", conn_id="c"), "http://127.0.0.1:8000/hook/path"),
    (Connection(conn_id="c", conn_type="https", host="hooks.slack.com", schema="services/T0/B0", password="XyZ"),
     "https://hooks.slack.com/services/T0/B0/XyZ"),
    (Connection(conn_id="c", conn_type="http", host="https://hooks.slack.com/", schema="services/T0"),
     "https://hooks.slack.com/services/T0"),
    (Connection(conn_id="c", conn_type="generic", host="chat.example.com", port=8443),
     "https://chat.example.com:8443"),
    (Connection(conn_id="c", conn_type="http", host="ignored", extra=json.dumps({"url": "https://x.example/hook?k=1"})),
     "https://x.example/hook?k=1"),
], ids=["uri", "password-segment", "host-with-scheme", "non-http-type", "extra-url"])
def test_webhook_url_from_connection(conn, url):
    assert alerts.webhook_url(conn) == url


# --- delivery ----------------------------------------------------------------------------------------

def test_deliver_posts_to_the_webhook_and_emails_the_recipients(connections, receiver, smtp, settings):
    alert = alerts.Alert(title="loan_default_training: task ingest_data failed", fields={"Run": RUN_ID},
                         error="no such file", links={"Task log": "https://airflow.example.com/x"})
    assert alerts.deliver(alert, settings) == {"webhook": "sent", "email": "sent"}
    [(path, body)] = receiver.requests
    assert path == "/services/T0/B0"
    assert body == alert.webhook_payload()
    [(sender, recipients, message)] = smtp.messages
    assert sender == "mlpipe@example.com"
    assert recipients == ["oncall@example.com", "ml@example.com"]
    assert message["Subject"] == "[mlpipe] loan_default_training: task ingest_data failed"
    assert message["To"] == "oncall@example.com, ml@example.com"
    html_body = SmtpSink.body(message)
    assert RUN_ID in html_body and "<pre>no such file</pre>" in html_body
    assert "https://airflow.example.com/x" in html_body


def test_receiver_answering_500_is_logged_not_raised(connections, smtp, settings, caplog, monkeypatch):
    with HttpReceiver(status=500) as failing:
        monkeypatch.setenv("AIRFLOW_CONN_MLPIPE_ALERTS_WEBHOOK", failing.url)
        with caplog.at_level(logging.ERROR, logger="mlpipe.orchestration.alerts"):
            outcome = alerts.deliver(alerts.Alert(title="t"), settings)
        assert len(failing.requests) == 1
    assert outcome == {"webhook": "failed: HTTP 500", "email": "sent"}  # one channel failing spares the other
    assert "answered HTTP 500" in caplog.text


def test_receivers_down_are_logged_not_raised(monkeypatch, settings, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_MLPIPE_ALERTS_WEBHOOK", f"http://127.0.0.1:{free_port()}/hook")
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", f"smtp://127.0.0.1:{free_port()}?disable_tls=true"
                                                    "&disable_ssl=true&timeout=5")
    with caplog.at_level(logging.ERROR, logger="mlpipe.orchestration.alerts"):
        outcome = alerts.deliver(alerts.Alert(title="t"), settings)
    assert outcome["webhook"].startswith("failed:") and outcome["email"].startswith("failed:")
    assert "webhook 'mlpipe_alerts_webhook' failed" in caplog.text
    assert "e-mail through 'smtp_default' failed" in caplog.text


def test_undefined_connections_and_no_recipients_skip_their_channel(monkeypatch, caplog, smtp):
    monkeypatch.delenv("AIRFLOW_CONN_MLPIPE_ALERTS_WEBHOOK", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_SMTP_DEFAULT", raising=False)
    with caplog.at_level(logging.INFO, logger="mlpipe.orchestration.alerts"):
        outcome = alerts.deliver(alerts.Alert(title="t"), spec.Alerts(email_to=["a@example.com"]))
    assert outcome == {"webhook": "skipped: connection 'mlpipe_alerts_webhook' is not defined",
                       "email": "skipped: connection 'smtp_default' is not defined"}
    assert "webhook skipped, connection 'mlpipe_alerts_webhook' is not defined" in caplog.text
    assert "e-mail skipped, connection 'smtp_default' is not defined" in caplog.text

    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", smtp.conn_uri())
    outcome = alerts.deliver(alerts.Alert(title="t"), spec.Alerts(webhook_conn_id=None))
    assert outcome == {"webhook": "skipped: no webhook connection configured",
                       "email": "skipped: no recipients (alerts.email_to)"}
    assert smtp.messages == []


# --- the Airflow side --------------------------------------------------------------------------------

def test_notifier_delivers_a_task_failure(pipeline_env, connections, receiver, smtp, settings):
    notifier = callbacks.PipelineAlertNotifier("loan_default", runs.TRAINING, settings, "task")
    notifier({"ti": failed_ti(), "run_id": RUN_ID, "exception": ValueError("missing.csv: no such file")})
    [text] = receiver.texts()
    assert text.startswith("loan_default_training: task ingest_data failed\n")
    assert "missing.csv: no such file" in text and RUN_ID in text
    assert [message["Subject"] for *_, message in smtp.messages] == [
        "[mlpipe] loan_default_training: task ingest_data failed"]


def test_notifier_never_raises(connections, receiver, settings, caplog):
    notifier = callbacks.PipelineAlertNotifier("loan_default", runs.TRAINING, settings, "task")
    notifier({"run_id": RUN_ID})  # no "ti": the message cannot be built
    assert receiver.requests == []
    assert "could not alert on a task failure of loan_default" in caplog.text


def test_send_alert_for_monitoring(connections, receiver, smtp):
    pipeline = spec.with_overrides(spec.load(SPEC_PATH), {"alerts.email_to": ["risk@example.com"]})
    outcome = callbacks.send_alert(pipeline, "loan_default: drift breach", "PSI 0.41 on int_rate",
                                  {"Report": "file:///store/monitoring/r1/report.html"})
    assert outcome == {"webhook": "sent", "email": "sent"}
    [text] = receiver.texts()
    assert text == ("loan_default: drift breach\nPipeline: loan_default\nPSI 0.41 on int_rate\n"
                    "Report: file:///store/monitoring/r1/report.html")
    assert smtp.messages[0][1] == ["risk@example.com"]


def test_every_dag_alerts_on_failures_and_carries_its_deadline():
    dags = factory.pipeline_dags(SPEC_PATH.parent)
    assert {"loan_default_training", "loan_default_scoring"} <= set(dags)
    pipelines = {pipeline.name: pipeline for pipeline in map(spec.load, spec.discover(SPEC_PATH.parent))}
    for dag_id, dag in dags.items():
        name, kind = dag_id.rsplit("_", 1)
        pipeline = pipelines[name]
        [deadline] = dag.deadline
        assert deadline.interval == timedelta(minutes=getattr(pipeline.alerts.deadline_minutes, kind))
        assert type(deadline.reference).__name__ == "DagRunQueuedAtDeadline"
        assert deadline.callback.path == "mlpipe.orchestration.callbacks.deadline_missed"
        assert isinstance(dag.on_failure_callback, callbacks.PipelineAlertNotifier)
        assert dag.on_failure_callback.scope == "run"
        for task in dag.tasks:
            [callback] = task.on_failure_callback
            assert isinstance(callback, callbacks.PipelineAlertNotifier) and callback.scope == "task", task.task_id
    assert dags["loan_default_training"].deadline[0].interval == timedelta(minutes=240)


def test_no_deadline_when_its_minutes_are_unset():
    pipeline = spec.with_overrides(spec.load(SPEC_PATH), {"alerts.deadline_minutes.scoring": None})
    assert callbacks.deadline_for(pipeline, "scoring", runs.SCORING) is None
    assert callbacks.dag_alerting(pipeline, "scoring", runs.SCORING)["deadline"] is None


def test_deadline_callback_run_as_the_triggerer_runs_it(pipeline_env, connections, receiver, smtp, tmp_path):
    """The callback goes through Airflow's own CallbackTrigger with the kwargs and context the scheduler
    gives it (``Deadline.handle_miss``): the run as the REST API shows it and the deadline."""
    from airflow.models.callback import CallbackState
    from airflow.triggers.callback import CallbackTrigger

    pipeline = spec.with_overrides(spec.load(SPEC_PATH), {"alerts.email_to": ["oncall@example.com"]})
    deadline = callbacks.deadline_for(pipeline, "training", runs.TRAINING)
    queued = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    context = {"dag_run": {"dag_id": "loan_default_training", "dag_run_id": RUN_ID, "state": "running",
                           "queued_at": queued.isoformat()},
               "deadline": {"id": "0199", "deadline_time": queued + deadline.interval}}
    trigger = CallbackTrigger(callback_path=deadline.callback.path,
                              callback_kwargs={**deadline.callback.kwargs, "context": context})

    async def events():
        return [event.payload async for event in trigger.run()]

    running, done = asyncio.run(events())
    assert running["state"] == CallbackState.RUNNING
    assert done == {"state": CallbackState.SUCCESS, "body": {"webhook": "sent", "email": "sent"}}
    [text] = receiver.texts()
    assert text.startswith("loan_default_training still running after 240 minutes\n")
    assert f"Run: {RUN_ID}" in text and "Deadline: 2026-11-23T12:00:00+00:00" in text
    assert "DAG run: https://airflow.example.com/dags/loan_default_training/runs/manual__" in text
    assert smtp.messages[0][2]["Subject"] == "[mlpipe] loan_default_training still running after 240 minutes"
