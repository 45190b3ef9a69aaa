"""The Airflow side of alerting: failure callbacks, deadline alerts and a function for tasks.

Every DAG of :mod:`mlpipe.orchestration.factory` gets, from :func:`task_alerting` and
:func:`dag_alerting`:

- ``on_failure_callback`` on every task (Airflow calls it once the task failed its last
  try; a retry calls ``on_retry_callback`` instead) and on the DAG (the run failed);
  both are a :class:`PipelineAlertNotifier`;
- ``deadline=``: a :class:`~airflow.sdk.DeadlineAlert` ``alerts.deadline_minutes.<kind>``
  after the run was queued, whose :class:`~airflow.sdk.AsyncCallback`
  (:func:`deadline_missed`) the triggerer runs when the run is still going by then.

Each DAG is a :class:`PipelineDAG`, whose local test run (``airflow dags test``) leaves the deadline out.

Monitoring code alerts with :func:`send_alert`. The messages and their delivery are in
:mod:`mlpipe.orchestration.alerts`; nothing here raises into Airflow: problems are logged.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any, Literal

from airflow.sdk import DAG, AsyncCallback, BaseNotifier, DeadlineAlert, DeadlineReference

from mlpipe.core import urls
from mlpipe.core.spec import Alerts, Spec
from mlpipe.orchestration import alerts, links
from mlpipe.store import runs

log = logging.getLogger(__name__)


def airflow_ui_base() -> str:
    """The Airflow UI's base URL: Airflow config ``[api] base_url``, default http://localhost:8080."""
    try:
        return links.airflow_base(default=alerts.AIRFLOW_UI_DEFAULT)
    except Exception as error:  # a link is not worth losing an alert for
        log.warning("alerts: could not read [api] base_url: %s", error)
        return alerts.AIRFLOW_UI_DEFAULT


def _mlflow_links(pipeline: str, run_id: str, run_kind: str) -> dict[str, str]:
    """``{"MLflow run": url}`` when the pipeline run's folder has a finished train step, else empty."""
    mlflow_run = alerts.mlflow_run_of(runs.run_uri(pipeline, run_id, kind=run_kind))
    return {"MLflow run": urls.mlflow_run_url(mlflow_run)} if mlflow_run else {}


def task_failure_alert(pipeline: str, run_kind: str, context: dict[str, Any]) -> alerts.Alert:
    """The alert for a task that failed its last try, from the context Airflow gives ``on_failure_callback``."""
    ti = context["ti"]
    run_id = context.get("run_id") or ti.run_id
    map_index = getattr(ti, "map_index", None)
    task = ti.task_id + (f"[{map_index}]" if map_index is not None and map_index >= 0 else "")
    links = {"Task log": alerts.task_log_url(airflow_ui_base(), ti.dag_id, run_id, ti.task_id,
                                             ti.try_number, map_index),
             **_mlflow_links(pipeline, run_id, run_kind)}
    return alerts.Alert(
        title=f"{ti.dag_id}: task {task} failed",
        fields={"Pipeline": pipeline, "DAG": ti.dag_id, "Task": task, "Run": run_id, "Try": str(ti.try_number)},
        error=alerts.error_excerpt(context.get("exception")) or "(no exception recorded; see the task log)",
        links=links)


def run_failure_alert(pipeline: str, run_kind: str, context: dict[str, Any]) -> alerts.Alert:
    """The alert for a failed DAG run, from the context Airflow gives a DAG's ``on_failure_callback``
    (``dag``, ``run_id``, ``reason`` and, when a task failed, that task's ``ti``)."""
    dag_id = context["dag"].dag_id
    run_id = context["run_id"]
    fields = {"Pipeline": pipeline, "DAG": dag_id, "Run": run_id, "Reason": str(context.get("reason") or "")}
    links = {"DAG run": alerts.dag_run_url(airflow_ui_base(), dag_id, run_id)}
    if ti := context.get("ti"):
        fields |= {"Task": ti.task_id, "Try": str(ti.try_number)}
        links["Task log"] = alerts.task_log_url(airflow_ui_base(), dag_id, run_id, ti.task_id, ti.try_number,
                                                getattr(ti, "map_index", None))
    return alerts.Alert(title=f"{dag_id}: run {run_id} failed", fields=fields,
                        error=alerts.error_excerpt(context.get("exception")),
                        links={**links, **_mlflow_links(pipeline, run_id, run_kind)})


class PipelineAlertNotifier(BaseNotifier):
    """Sends a pipeline's alert for a failed task (``scope="task"``) or a failed DAG run (``scope="run"``).

    Used as ``on_failure_callback``; builds the message from the callback context and delivers it to the
    channels of ``settings`` (a spec's ``alerts`` section). Never raises: problems are logged.
    """

    def __init__(self, pipeline: str, run_kind: str, settings: Alerts, scope: Literal["task", "run"] = "task"):
        super().__init__()
        self.pipeline, self.run_kind, self.settings, self.scope = pipeline, run_kind, settings, scope

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render (no template fields). Skipping Jinja also keeps the DAG callback working under
        ``airflow dags test``, whose callback context holds a serialized DAG without a template environment."""

    def notify(self, context: Any) -> None:
        try:
            build = task_failure_alert if self.scope == "task" else run_failure_alert
            outcome = alerts.deliver(build(self.pipeline, self.run_kind, context), self.settings)
            log.info("alerts: %s failure of %s: %s", self.scope, self.pipeline, outcome)
        except Exception:
            log.exception("alerts: could not alert on a %s failure of %s", self.scope, self.pipeline)


def overdue_alert(pipeline: str, run_kind: str, minutes: float, context: dict[str, Any]) -> alerts.Alert:
    """The alert for a run still going ``minutes`` after it was queued, from a deadline callback's context
    (``dag_run``: the run as the REST API shows it; ``deadline``: its id and time)."""
    dag_run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    dag_id, run_id = dag_run.get("dag_id", "?"), dag_run.get("dag_run_id") or dag_run.get("run_id", "?")
    fields = {"Pipeline": pipeline, "DAG": dag_id, "Run": run_id, "State": str(dag_run.get("state", "?")),
              "Queued at": _when(dag_run.get("queued_at")), "Deadline": _when(deadline.get("deadline_time"))}
    return alerts.Alert(
        title=f"{dag_id} still running after {minutes:g} minutes", fields=fields,
        text=f"The run is past its deadline (alerts.deadline_minutes: {minutes:g} after it was queued).",
        links={"DAG run": alerts.dag_run_url(airflow_ui_base(), dag_id, run_id),
               **_mlflow_links(pipeline, run_id, run_kind)})


def _when(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value or "?")


def _deliver_overdue(pipeline: str, run_kind: str, minutes: float, settings: dict[str, Any],
                     context: dict[str, Any]) -> dict[str, str]:
    try:
        alert = overdue_alert(pipeline, run_kind, minutes, context)
        return alerts.deliver(alert, Alerts.model_validate(settings))
    except Exception as error:
        log.exception("alerts: could not alert on an overdue run of %s", pipeline)
        return {"error": str(error)}


async def deadline_missed(pipeline: str, run_kind: str, minutes: float, settings: dict[str, Any],
                          context: dict[str, Any] | None = None) -> dict[str, str]:
    """The deadline callback: alert that a run is overdue. The triggerer awaits it with the ``kwargs`` of
    its :class:`~airflow.sdk.AsyncCallback` plus ``context``; returns each channel's outcome (kept as the
    callback's result). Delivery is blocking I/O, so it runs in a thread, off the triggerer's event loop."""
    return await asyncio.to_thread(_deliver_overdue, pipeline, run_kind, minutes, settings, context or {})


def deadline_for(pipeline: Spec, dag_kind: str, run_kind: str) -> DeadlineAlert | None:
    """The DAG's deadline: ``alerts.deadline_minutes.<dag_kind>`` after the run was queued; None if unset."""
    minutes = getattr(pipeline.alerts.deadline_minutes, dag_kind, None)
    if minutes is None:
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(minutes=minutes),
        callback=AsyncCallback(deadline_missed, kwargs={
            "pipeline": pipeline.name, "run_kind": run_kind, "minutes": minutes,
            "settings": pipeline.alerts.model_dump(mode="json", exclude={"deadline_minutes"})}),
        name=f"{pipeline.name}_{dag_kind} overdue")


class PipelineDAG(DAG):
    """The DAG class of every pipeline DAG: an Airflow DAG whose local test run leaves its deadline out.

    ``DAG.test()`` (``airflow dags test``, ``make run``) cannot run a DAG with a deadline alert in Airflow
    3.3.2: it schedules a copy of the DAG it serializes and deserializes itself instead of the one stored in
    the database, so the copy's ``deadline`` holds each alert's JSON where the scheduler's DAG holds the id
    of its ``deadline_alert`` row, and once the run has *succeeded* ``DagRun.update_state`` looks those ids
    up and fails the command (``StatementError: 'dict' object has no attribute 'hex'``). A test run could
    not meet its deadline anyway: it is created running, never queued (no ``queued_at`` for
    ``DAGRUN_QUEUED_AT``, so Airflow itself skips its deadline), and no triggerer runs the callback. So
    ``test()`` runs without the deadline; the DAGs it writes to the database for the scheduler are parsed
    from the DAG files afresh and keep theirs.
    """

    def test(self, *args: Any, **kwargs: Any) -> Any:
        deadline, self.deadline = self.deadline, None
        try:
            return super().test(*args, **kwargs)
        finally:
            self.deadline = deadline


def task_alerting(pipeline: Spec, run_kind: str) -> dict[str, Any]:
    """``default_args`` that alert on every task's final failure."""
    return {"on_failure_callback": PipelineAlertNotifier(pipeline.name, run_kind, pipeline.alerts, "task")}


def dag_alerting(pipeline: Spec, dag_kind: str, run_kind: str) -> dict[str, Any]:
    """``DAG(...)`` arguments that alert on a failed run and on an overdue one (``deadline``)."""
    return {"on_failure_callback": PipelineAlertNotifier(pipeline.name, run_kind, pipeline.alerts, "run"),
            "deadline": deadline_for(pipeline, dag_kind, run_kind)}


def send_alert(pipeline: Spec, title: str, text: str = "", links: dict[str, str] | None = None,
               fields: dict[str, str] | None = None) -> dict[str, str]:
    """Alert the people of ``pipeline`` (its ``alerts`` section) from task code, e.g. on a drift breach.

    ``title`` is one line; ``text`` free text; ``links`` label → URL; ``fields`` name → value (default:
    the pipeline's name). Returns each channel's outcome (``{"webhook": "sent", "email": "skipped: ..."}``)
    and never raises. Call it from an Airflow task (connections resolve there), not from a step process.
    """
    return alerts.deliver(alerts.Alert(title=title, text=text, links=dict(links or {}),
                                       fields=dict(fields or {"Pipeline": pipeline.name})), pipeline.alerts)
