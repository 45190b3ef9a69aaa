"""Alerts for ops: what a message says and how it reaches people.

An :class:`Alert` is a title, a few named fields (pipeline, DAG, task, run, try), an
optional error excerpt and links (the task log in the Airflow UI, the MLflow run).
:func:`deliver` sends it to the channels of a spec's ``alerts`` section:

- a Slack-compatible incoming webhook: ``POST`` of ``{"text": ..., "blocks": [...]}``
  to the URL of the Airflow connection ``alerts.webhook_conn_id`` (see :func:`webhook_url`);
- e-mail to ``alerts.email_to`` through the Airflow SMTP connection ``alerts.email_conn_id``
  (the smtp provider's ``SmtpHook``); no recipients, no e-mail.

Secrets live only in those connections. A connection that is not defined skips its
channel with a log line; a delivery that fails (receiver down, HTTP 500) is logged.
Nothing here raises into the caller: an alerting problem must never fail a task or
hide the failure it reports. Airflow is imported only inside the delivery functions,
so building messages stays import-light.
"""

from __future__ import annotations

import html
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mlpipe.core.results import Train
from mlpipe.store import runs

if TYPE_CHECKING:
    from mlpipe.core.spec import Alerts

log = logging.getLogger(__name__)

AIRFLOW_UI_DEFAULT = "http://localhost:8080"
DEFAULT_FROM = "mlpipe-alerts@localhost"
WEBHOOK_TIMEOUT_SECONDS = 10
ERROR_LINES, ERROR_CHARS = 15, 2000
SENT, SKIPPED, FAILED = "sent", "skipped", "failed"  # how a channel fared (the start of its outcome)


@dataclass(frozen=True)
class Alert:
    """One alert: a one-line title, named fields, an optional error excerpt and links (label → URL)."""

    title: str
    fields: dict[str, str] = field(default_factory=dict)
    error: str = ""
    links: dict[str, str] = field(default_factory=dict)
    text: str = ""  # free text (e.g. a monitoring breach), shown after the fields

    def plain_text(self) -> str:
        """The whole alert as plain text (the webhook's ``text``; readable by any chat tool)."""
        lines = [self.title, *(f"{name}: {value}" for name, value in self.fields.items())]
        if self.text:
            lines.append(self.text)
        if self.error:
            lines += ["Error:", self.error]
        lines += [f"{label}: {url}" for label, url in self.links.items()]
        return "\n".join(lines)

    def webhook_payload(self) -> dict[str, Any]:
        """The JSON body for a Slack-compatible webhook: ``text`` (the fallback) and Block Kit ``blocks``."""
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": _clip(self.title, 150)}},
        ]
        if self.fields:
            blocks.append({"type": "section", "fields": [
                {"type": "mrkdwn", "text": _clip(f"*{name}*\n{value}", 2000)}
                for name, value in list(self.fields.items())[:10]]})
        if self.text:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(self.text, 3000)}})
        if self.error:
            blocks.append({"type": "section",
                           "text": {"type": "mrkdwn", "text": "```" + _clip(self.error, 2900) + "```"}})
        if self.links:
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": " | ".join(f"<{url}|{label}>" for label, url in self.links.items())}]})
        return {"text": self.plain_text(), "blocks": blocks}

    def email_subject(self) -> str:
        return f"[mlpipe] {self.title}"

    def email_html(self) -> str:
        """The e-mail body: the fields as a table, the error as preformatted text, then the links."""
        rows = "".join(f"<tr><th align='left'>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
                       for name, value in self.fields.items())
        parts = [f"<h3>{html.escape(self.title)}</h3>", f"<table>{rows}</table>" if rows else ""]
        if self.text:
            parts.append(f"<p>{html.escape(self.text)}</p>")
        if self.error:
            parts.append(f"<p><b>Error</b></p><pre>{html.escape(self.error)}</pre>")
        parts += [f"<p><a href='{html.escape(url)}'>{html.escape(label)}</a>: {html.escape(url)}</p>"
                  for label, url in self.links.items()]
        return "\n".join(part for part in parts if part)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_excerpt(error: BaseException | str | None) -> str:
    """The first lines of an error's message (what a reader needs; the task log has the rest)."""
    if error is None:
        return ""
    message = str(error).strip() or type(error).__name__
    lines = message.splitlines()
    excerpt = "\n".join(lines[:ERROR_LINES])
    if len(lines) > ERROR_LINES:
        excerpt += f"\n… ({len(lines) - ERROR_LINES} more lines in the task log)"
    return _clip(excerpt, ERROR_CHARS)


# --- links ------------------------------------------------------------------------------------------

def task_log_url(base_url: str, dag_id: str, run_id: str, task_id: str, try_number: int | None = None,
                 map_index: int | None = None) -> str:
    """A task try's page (its log) in the Airflow 3 UI, as Airflow's own ``TaskInstance.log_url`` builds it:
    ``<base>/dags/<dag>/runs/<run>/tasks/<task>[/mapped/<i>]?try_number=<n>``."""
    mapped = f"/mapped/{map_index}" if map_index is not None and map_index >= 0 else ""
    tried = f"?try_number={try_number}" if try_number else ""
    return f"{base_url.rstrip('/')}/dags/{dag_id}/runs/{quote(run_id)}/tasks/{task_id}{mapped}{tried}"


def dag_run_url(base_url: str, dag_id: str, run_id: str) -> str:
    """A DAG run's page in the Airflow 3 UI."""
    return f"{base_url.rstrip('/')}/dags/{dag_id}/runs/{quote(run_id)}"


def mlflow_run_of(run_uri: str) -> str | None:
    """The MLflow run id of a pipeline run folder once its ``train`` step finished; None otherwise.

    Best effort: any problem reading the folder is logged and gives None."""
    try:
        return runs.Run(run_uri).result(Train).mlflow_run_id
    except runs.StepNotFinished:
        return None
    except Exception as error:  # a link is not worth failing an alert for
        log.warning("alerts: could not read the train result of %s: %s", run_uri, error)
        return None


# --- delivery ---------------------------------------------------------------------------------------

def webhook_url(conn: Any) -> str:
    """The webhook URL an Airflow connection stands for.

    - extra ``url`` (or ``webhook_url``), when set, is the URL as it is;
    - else ``<scheme>://<host>[:<port>]/<schema>[/<password>]``: the scheme is the connection type when it
      is ``http`` or ``https`` (as a URI connection ``http://host:port/path`` gives), else ``https``; a host
      that already holds a scheme (``https://hooks.slack.com``) is used as it is; the password, if any, is
      the last path segment, so the secret part of a Slack URL can sit in the masked password field.
    """
    extra = conn.extra_dejson or {}
    if extra.get("url") or extra.get("webhook_url"):
        return str(extra.get("url") or extra.get("webhook_url"))
    if not conn.host:
        raise ValueError(f"connection {conn.conn_id!r} has neither a host nor an extra 'url'")
    if "://" in conn.host:
        base = conn.host.rstrip("/")
    else:
        scheme = conn.conn_type if conn.conn_type in ("http", "https") else "https"
        base = f"{scheme}://{conn.host}" + (f":{conn.port}" if conn.port else "")
    path = "/".join(part.strip("/") for part in (conn.schema, conn.password) if part)
    return f"{base}/{path}" if path else base


def _connection(conn_id: str) -> Any | None:
    """The Airflow connection ``conn_id``, or None when it is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def post_webhook(url: str, payload: dict[str, Any], timeout: float = WEBHOOK_TIMEOUT_SECONDS) -> None:
    """POST ``payload`` as JSON to an http(s) ``url``; raise on a connection error or a non-2xx answer."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"a webhook URL must be http:// or https://, got {url.split(':', 1)[0]}:")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "mlpipe-alerts"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the scheme is checked above
        response.read()


def send_webhook(alert: Alert, conn_id: str | None) -> str:
    """Send ``alert`` to the webhook of connection ``conn_id``; return the outcome (never raises)."""
    if not conn_id:
        return f"{SKIPPED}: no webhook connection configured"
    try:
        conn = _connection(conn_id)
        if conn is None:
            log.info("alerts: webhook skipped, connection %r is not defined", conn_id)
            return f"{SKIPPED}: connection {conn_id!r} is not defined"
        post_webhook(webhook_url(conn), alert.webhook_payload())
    except urllib.error.HTTPError as error:
        log.error("alerts: webhook %r answered HTTP %s %s", conn_id, error.code, error.reason)
        return f"{FAILED}: HTTP {error.code}"
    except Exception as error:  # delivery problems are logged, never raised
        log.error("alerts: webhook %r failed: %s", conn_id, error)
        return f"{FAILED}: {error}"
    log.info("alerts: webhook %r sent %r", conn_id, alert.title)
    return SENT


def send_email(alert: Alert, conn_id: str | None, to: list[str]) -> str:
    """E-mail ``alert`` to ``to`` through the SMTP connection ``conn_id``; return the outcome (never raises).

    The sender is the connection's extra ``from_email``, else ``mlpipe-alerts@localhost``."""
    if not to:
        return f"{SKIPPED}: no recipients (alerts.email_to)"
    if not conn_id:
        return f"{SKIPPED}: no SMTP connection configured"
    try:
        conn = _connection(conn_id)
        if conn is None:
            log.info("alerts: e-mail skipped, connection %r is not defined", conn_id)
            return f"{SKIPPED}: connection {conn_id!r} is not defined"
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=conn_id) as hook:
            hook.send_email_smtp(to=to, subject=alert.email_subject(), html_content=alert.email_html(),
                                 from_email=(conn.extra_dejson or {}).get("from_email") or DEFAULT_FROM)
    except Exception as error:  # delivery problems are logged, never raised
        log.error("alerts: e-mail through %r failed: %s", conn_id, error)
        return f"{FAILED}: {error}"
    log.info("alerts: e-mailed %r to %s", alert.title, ", ".join(to))
    return SENT


def deliver(alert: Alert, settings: Alerts) -> dict[str, str]:
    """Send ``alert`` to every channel of a spec's ``alerts`` section.

    Returns each channel's outcome (``{"webhook": "sent", "email": "skipped: ..."}``); never raises."""
    return {"webhook": send_webhook(alert, settings.webhook_conn_id),
            "email": send_email(alert, settings.email_conn_id, list(settings.email_to))}
