"""The ops app the api-server mounts at ``/mlpipe``: the Models page, artifacts, rollback, metrics.

- ``GET /mlpipe/``: the Models page (:mod:`mlpipe.ui.overview`, :mod:`mlpipe.ui.render`), for a
  logged-in user: the pipelines whose training DAG they may read;
- ``GET /mlpipe/artifact?uri=``: a report from the artifact store (:mod:`mlpipe.ui.artifacts`), for
  users who may read the pipeline it belongs to;
- ``POST /mlpipe/rollback``: without ``confirm=yes`` the confirmation page; with it and the signed
  token, :func:`mlpipe.registry.rollback.rollback` and the ``champion`` asset event
  (:mod:`mlpipe.ui.champion_event`); only for users who may trigger ``<pipeline>_training``;
- ``GET /mlpipe/metrics``: the latest monitoring figures in Prometheus text (:mod:`mlpipe.ui.metrics`),
  for a logged-in caller (bearer token or cookie).

Not logged in: the HTML pages redirect to Airflow's login page, the rest answer 401. Not allowed:
403 with the reason. A rollback that cannot be done (no previous champion, the champion moved
since the confirmation) answers 409 with the message, and nothing changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from mlpipe.core import assets
from mlpipe.core.errors import Refused, StorageError
from mlpipe.core.urls import ARTIFACT_ROUTE
from mlpipe.registry import rollback as rollbacks
from mlpipe.ui import access, artifacts, champion_event, confirmation, overview, render
from mlpipe.ui.metrics import exposition

if TYPE_CHECKING:
    from airflow.api_fastapi.auth.managers.models.base_user import BaseUser

User = Annotated[Any, Depends(access.current_user)]  # the logged-in user, or None


def _base(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _login(request: Request) -> RedirectResponse:
    from airflow.api_fastapi.app import get_auth_manager

    return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)


def _message(request: Request, user: BaseUser | None, status: int, heading: str, message: str,
             kind: str = "error") -> HTMLResponse:
    return HTMLResponse(render.message_page(heading, message, kind, user.get_name() if user else "", _base(request)),
                        status_code=status)


def _visible(user: BaseUser) -> list[overview.Pipeline]:
    return [p for p in overview.pipelines() if access.can_view(user, p.name)]


def _find(user: BaseUser, name: str) -> overview.Pipeline | None:
    return next((p for p in _visible(user) if p.name == name and not p.error), None)


def models(request: Request, user: User) -> Response:
    """The Models page."""
    if user is None:
        return _login(request)
    sections = []
    for pipeline in _visible(user):
        allowed = access.can_rollback(user, pipeline.name)
        sections.append(render.section(overview.overview(pipeline), allowed,
                                       "" if allowed else access.refusal(user, pipeline.name)))
    return HTMLResponse(render.models_page(sections, user.get_name(), _base(request),
                                           str(overview.pipelines_folder())))


def artifact(request: Request, user: User, uri: Annotated[str, Query()] = "") -> Response:
    """One report from the artifact store, if it is under the store and the user may see its pipeline."""
    if user is None:
        return _login(request)
    try:
        found = artifacts.resolve(uri)
    except artifacts.ArtifactRefused as error:
        return PlainTextResponse(str(error), status_code=400)
    if not access.can_view(user, found.pipeline):
        return PlainTextResponse(f"{user.get_name()} may not see the artifacts of {found.pipeline}", status_code=403)
    try:
        content = artifacts.read(found)
    except StorageError as error:
        return PlainTextResponse(str(error), status_code=404)
    return Response(content, media_type=found.media_type, headers=artifacts.HEADERS)


def rollback(request: Request, user: User, pipeline: Annotated[str, Form()] = "",
             reason: Annotated[str, Form(max_length=500)] = "", confirm: Annotated[str, Form()] = "",
             token: Annotated[str, Form()] = "") -> Response:
    """Roll back in two steps: the confirmation page, then (``confirm=yes`` + its token) the rollback."""
    if user is None:
        return PlainTextResponse("Not authenticated: log in to Airflow first", status_code=401)
    found = _find(user, pipeline)
    if found is None:
        return _message(request, user, 404, "Rollback refused", f"no pipeline {pipeline!r} that you may see")
    if not access.can_rollback(user, found.name):
        return _message(request, user, 403, "Rollback refused", access.refusal(user, found.name))
    reason = reason.strip()
    if not reason:
        return _message(request, user, 400, "Rollback refused", "give a reason: it is recorded in the audit log")
    registry = overview.registry(found.model)
    if registry.error or registry.champion is None or registry.previous is None:
        return _message(request, user, 409, "Rollback not possible",
                        registry.error or f"{found.model} has no champion and previous champion to switch")
    secret = request.app.state.secret_key
    seen = {"user": user.get_name(), "pipeline": found.name, "champion": registry.champion.number,
            "previous": registry.previous.number}
    if confirm != "yes":
        return HTMLResponse(render.confirm_page(
            user=user.get_name(), base=_base(request), model=found.model, pipeline=found.name, reason=reason,
            champion=seen["champion"], previous=seen["previous"], token=confirmation.sign(secret, **seen)))
    try:
        confirmed = confirmation.verify(secret, token, user=seen["user"], pipeline=found.name)
    except confirmation.ConfirmationError as error:
        return _message(request, user, 400, "Rollback refused", str(error))
    try:
        done = rollbacks.rollback(found.model, reason, actor=user.get_name(),
                                  expected_champion=int(confirmed["champion"]))
    except Refused as error:
        return _message(request, user, 409, "Rollback not done", str(error))
    return _message(request, user, 200, "Rolled back",
                    f"{found.model}: champion is now version {done['to_version']} (was {done['from_version']}); "
                    f"recorded in the audit log as done by {user.get_name()}: {reason}; "
                    f"{_champion_event(found.name, assets.rollback_event(done, reason, user.get_name()))}",
                    kind="success")


def _champion_event(pipeline: str, extra: dict[str, Any]) -> str:
    """Record the rollback's ``champion`` asset event; what became of it, for the page. The rollback is done
    whatever happens here: a failure is told and logged, never raised."""
    try:
        event = champion_event.record(pipeline, extra)
    except Exception as error:  # the database may refuse; the alias has moved all the same
        overview.log.exception("rollback of %s: no champion asset event", pipeline)
        return f"no champion asset event ({type(error).__name__}: {error})"
    return "no champion asset event (Airflow knows no such asset)" if event is None else \
        f"champion asset event {event} recorded"


def metrics(user: User) -> Response:
    """The latest monitoring figures of the pipelines the caller may see."""
    if user is None:
        return PlainTextResponse("Not authenticated", status_code=401)
    figures = []
    for pipeline in _visible(user):
        if pipeline.error:
            continue
        report = _quiet(overview.monitoring, pipeline.name)
        registry = _quiet(overview.registry, pipeline.model)
        champion = registry.champion.number if registry and registry.champion else None
        figures.append((pipeline.name, report if report and "status" in report else None, champion))
    return Response(exposition(figures), media_type="text/plain; version=0.0.4; charset=utf-8")


def _quiet(gather: Any, *args: Any) -> Any:
    try:
        return gather(*args)
    except Exception:  # one unreadable pipeline leaves its figures out of the scrape
        overview.log.exception("metrics: cannot read %s of %s", getattr(gather, "__name__", gather), args)
        return None


def create_app(secret_key: str | None = None) -> FastAPI:
    """The ops app; ``secret_key`` signs rollback confirmations (default: the api-server's ``[api] secret_key``)."""
    if secret_key is None:
        from airflow.api_fastapi.auth.tokens import get_signing_key

        secret_key = get_signing_key("api", "secret_key")
    app = FastAPI(title="mlpipe ops", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.secret_key = secret_key
    app.add_api_route("/", models, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route(ARTIFACT_ROUTE, artifact, methods=["GET"])
    app.add_api_route("/rollback", rollback, methods=["POST"], response_class=HTMLResponse)
    app.add_api_route("/metrics", metrics, methods=["GET"], response_class=PlainTextResponse)
    return app
