"""The HTTP API of ``mlpipe serve``: predictions, explanations, health, metadata, metrics, reload.

    POST /predict   {"records": [{feature: value, ...}, ...]} -> {"model": {...}, "predictions": [{score, decision,
                    reasons}]}: a declined record's reason codes (at most ``spec.reason_count``), [] for an approved
                    one (:mod:`mlpipe.model.reasons`); regression: {score}, the value; multiclass:
                    {probabilities: {class: p}, predicted_class}
    POST /explain   same body -> per record: its prediction, bias and per-feature contributions (log-odds;
                    multiclass: bias and contributions per class)
    POST /reload    re-read the aliases now -> {"version": <champion>, "changed": bool}
    GET  /health    the process is up            GET /ready     a champion is loaded (else 503)
    GET  /metadata  name, version, alias, task, data version, threshold (binary), feature schema
    GET  /metrics   Prometheus text: requests by endpoint/status/version, latency, versions, reloads

Every answer from a model carries ``X-Model-Version``. A share of requests
(``spec.serving.challenger_fraction``) is answered by ``@challenger`` when it exists;
with ``shadow: true`` the challenger also scores every request after the response
is sent, and its answer is only logged and captured. Bad input is a 422 naming the
field (FastAPI's ``{"detail": [{"loc": [...], "msg": ...}]}``, without echoing the input), never
a 500. A body past ``spec.serving.max_body_bytes`` (:mod:`mlpipe.serving.limits`) or with more
than ``spec.serving.max_records`` records is a 413 naming the size and the limit. ``/openapi.json``
describes the bodies with the champion's feature schema (:mod:`mlpipe.serving.openapi`). With
``$MLPIPE_SERVE_TOKEN`` set, every endpoint but /health and /ready needs
``Authorization: Bearer <token>``. The aliases are polled every
``$MLPIPE_SERVE_POLL_SECONDS`` (default 30).

This module exists only for the server process: it imports FastAPI, uvicorn and
prometheus-client at the top.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import TypeAdapter, ValidationError
from starlette.background import BackgroundTask

from mlpipe.core import settings
from mlpipe.core.spec import Spec
from mlpipe.data.pii import hash_key, mask_records
from mlpipe.model.reasons import ReasonCodes
from mlpipe.serving.capture import Capture
from mlpipe.serving.limits import BodyLimitMiddleware
from mlpipe.serving.loader import ModelSet, Served, ServedModel
from mlpipe.serving.openapi import AUTH_ERRORS, BODY_ERRORS, NO_CHAMPION, PREDICTED, openapi, problem
from mlpipe.store.runs import captured_folder

log = logging.getLogger(__name__)

VERSION_HEADER = "X-Model-Version"
ENDPOINTS = ("/predict", "/explain", "/reload", "/health", "/ready", "/metadata", "/metrics")
CAPTURE_FLUSH_SECONDS = 10.0


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mlpipe_serve_requests", "HTTP requests", ["endpoint", "status", "version"],
                                registry=self.registry)
        self.latency = Histogram("mlpipe_serve_request_seconds", "Request latency", ["endpoint"],
                                 buckets=(.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5),
                                 registry=self.registry)
        self.version = Gauge("mlpipe_serve_model_version", "Served model version (0: none)", ["alias"],
                             registry=self.registry)
        self.reloads = Counter("mlpipe_serve_reloads", "Alias refreshes", ["result"], registry=self.registry)

    def served(self, served: Served) -> None:
        for alias, version in served.versions().items():
            self.version.labels(alias).set(version or 0)


class MetricsMiddleware:
    """Counts every HTTP request by endpoint, status and answering model version, and times it (pure ASGI)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = {"status": 500, "version": ""}

        async def observe(message: dict) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["version"] = dict(message.get("headers", [])).get(VERSION_HEADER.lower().encode(), b"").decode()
            await send(message)

        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        started = time.perf_counter()
        try:
            await self.app(scope, receive, observe)
        finally:
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            self.metrics.requests.labels(endpoint, str(seen["status"]), seen["version"]).inc()


def bearer_check(token: str | None):
    """A dependency requiring ``Authorization: Bearer <token>`` (401 without, 403 wrong); none when no token."""
    async def check(request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(403, "invalid bearer token")

    return [Depends(check)] if token else []


def validated(model: ServedModel, body: bytes) -> list[dict[str, Any]]:
    """The records of a request body, checked against ``model``'s feature schema; 422 naming the field if not,
    413 naming the count and the limit past ``serving.max_records`` records."""
    try:
        return model.validator.validate_json(body).records
    except ValidationError as error:
        errors = error.errors(include_url=False)
        for item in errors:
            if item["type"] == "too_long" and item["loc"] == ("records",):
                raise HTTPException(413, f"request of {item['ctx']['actual_length']} records exceeds the limit of "
                                         f"{item['ctx']['max_length']} records (serving.max_records)") from None
        raise RequestValidationError([body_error(item) for item in errors]) from None


def body_error(item: dict[str, Any]) -> dict[str, Any]:
    """A pydantic error as FastAPI reports body errors (``loc`` from ``body``), without the ``input``: echoed
    back it could be the whole body, hold PII, or be a NaN that JSON cannot carry (that was a 500)."""
    return {**{key: value for key, value in item.items() if key != "input"}, "loc": ("body", *item["loc"])}


def json_response(content: dict[str, Any], model: ServedModel, background: BackgroundTask | None = None) -> Response:
    return Response(json.dumps(content, separators=(",", ":")).encode(), media_type="application/json",
                    headers={VERSION_HEADER: str(model.version)}, background=background)


class Server:
    """The state behind the routes: the model set, routing settings, capture and metrics."""

    def __init__(self, spec: Spec, poll_seconds: float, capture: Capture) -> None:
        self.spec = spec
        self.pii_key = hash_key(spec.pii)  # fails at start when a hash rule has no key
        self.reasons = ReasonCodes.of(spec)  # None: no reason codes (not binary, or reason_count 0)
        self.models = ModelSet(spec.registered_model, spec.serving.max_records)
        self.poll_seconds = poll_seconds
        self.capture = capture
        self.metrics = Metrics()
        self.flush_now = asyncio.Event()

    def records(self, model: ServedModel, body: bytes) -> list[dict[str, Any]]:
        """The request's records, validated (422 naming the field) and with the spec's PII rules applied,
        as at ingest: the model was trained on masked values, and nothing captured holds raw PII."""
        return mask_records(validated(model, body), self.spec.pii, self.pii_key)

    def validator(self) -> TypeAdapter | None:
        """The request validator of the champion served now (``None`` before one is loaded)."""
        champion = self.models.current.champion
        return None if champion is None else champion.validator

    def served(self) -> Served:
        if self.models.current.champion is None:
            raise HTTPException(503, f"no champion of {self.models.name} loaded yet")
        return self.models.current

    def answering(self, served: Served) -> ServedModel:
        """The champion, or for a ``challenger_fraction`` share of requests the challenger (A/B)."""
        fraction = self.spec.serving.challenger_fraction
        if served.challenger is not None and fraction > 0 and random.random() < fraction:  # noqa: S311 (routing)
            return served.challenger
        return served.champion

    async def refresh(self) -> bool:
        """Re-read the aliases in a worker thread (loading can take seconds); count the outcome."""
        try:
            changed = await asyncio.to_thread(self.models.refresh)
        except Exception:
            self.metrics.reloads.labels("error").inc()
            raise
        self.metrics.reloads.labels("changed" if changed else "unchanged").inc()
        self.metrics.served(self.models.current)
        return changed

    async def poll(self) -> None:
        """Refresh now, then every ``poll_seconds``; a failure is logged and retried at the next poll."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing %s's aliases failed; serving what is loaded", self.models.name)
            await asyncio.sleep(self.poll_seconds)

    async def flush_captures(self) -> None:
        """Write captured rows every few seconds, or as soon as the buffer is full."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush_now.wait(), CAPTURE_FLUSH_SECONDS)
            self.flush_now.clear()
            await self.write_captures()

    async def write_captures(self) -> None:
        try:
            await asyncio.to_thread(self.capture.flush)
        except Exception:
            log.exception("writing captured requests under %s failed", self.capture.root)

    def after_predict(self, served: Served, answered: ServedModel, records: list[dict[str, Any]],
                      predictions: list[dict[str, Any]]) -> BackgroundTask | None:
        """The work done after the response is sent (on the event loop, so it may set the flush event):
        the shadow challenger's scores and the capture."""
        shadow = self.spec.serving.shadow and served.challenger is not None and answered is served.champion
        capture = self.capture.wanted()
        if not (shadow or capture):
            return None
        return BackgroundTask(self._record, "predict", served.challenger if shadow else None, answered, records,
                              predictions, capture)

    def after_explain(self, answered: ServedModel, records: list[dict[str, Any]],
                      explanations: list[dict[str, Any]]) -> BackgroundTask | None:
        """The capture of an explained request (sampled like predictions), after the response is sent."""
        if not self.capture.wanted():
            return None
        return BackgroundTask(self._record, "explain", None, answered, records, explanations, True)

    async def _record(self, endpoint: str, shadow: ServedModel | None, answered: ServedModel,
                      records: list[dict[str, Any]], answers: list[dict[str, Any]], capture: bool) -> None:
        shadowed = shadow_predictions(shadow, records) if shadow is not None else None
        if shadowed is not None:
            log.info("shadow: %s version %d scored %d records", shadow.name, shadow.version, len(records))
        if capture and self.capture.add(capture_rows(endpoint, answered, records, answers, shadow, shadowed)):
            self.flush_now.set()


def shadow_predictions(shadow: ServedModel, records: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The shadow challenger's predictions, or ``None`` (logged) when it cannot score these records."""
    try:
        return shadow.predictions(records)
    except (KeyError, ValueError):
        log.exception("shadow %s version %d could not score the request", shadow.name, shadow.version)
        return None


def capture_rows(endpoint: str, answered: ServedModel, records: list[dict[str, Any]], answers: list[dict[str, Any]],
                 shadow: ServedModel | None, shadowed: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """One captured row per answered record: the (masked) record and the answer (prediction or explanation)."""
    request_id, now = uuid.uuid4().hex, datetime.now(UTC).isoformat()
    rows = []
    for index, (record, answer) in enumerate(zip(records, answers, strict=True)):
        row = {"time": now, "endpoint": endpoint, "request_id": request_id, "index": index,
               "model": answered.identity(), "record": record, **answer}
        if shadowed is not None:
            row["shadow"] = {"version": shadow.version, **shadowed[index]}
        rows.append(row)
    return rows


def routes(server: Server, token: str | None) -> APIRouter:
    """The endpoints; all but /health and /ready behind the bearer token when one is set."""
    open_routes = APIRouter()
    router = APIRouter(dependencies=bearer_check(token), responses=AUTH_ERRORS if token else None)

    @open_routes.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @open_routes.get("/ready", responses=NO_CHAMPION)
    async def ready() -> dict[str, Any]:
        return {"status": "ready", **server.served().versions()}

    @router.post("/predict", responses={**PREDICTED, **BODY_ERRORS})
    async def predict(request: Request) -> Response:
        served = server.served()
        model = server.answering(served)
        records = server.records(model, await request.body())
        predictions = model.predictions(records, server.reasons)
        return json_response({"model": model.identity(), "predictions": predictions}, model,
                             server.after_predict(served, model, records, predictions))

    @router.post("/explain", responses=BODY_ERRORS)
    async def explain(request: Request) -> Response:
        model = server.served().champion
        records = server.records(model, await request.body())
        explanations = await asyncio.to_thread(model.explanations, records)
        return json_response({"model": model.identity(), "explanations": explanations}, model,
                             server.after_explain(model, records, explanations))

    @router.post("/reload", responses={503: problem("Reading the aliases failed")})
    async def reload() -> dict[str, Any]:
        try:
            changed = await server.refresh()
        except Exception as error:
            raise HTTPException(503, f"reload failed, still serving what was loaded: {error}") from error
        champion = server.models.current.champion
        return {"version": None if champion is None else champion.version, "changed": changed}

    @router.get("/metadata", responses=NO_CHAMPION)
    async def metadata() -> dict[str, Any]:
        served = server.served()
        return {**served.champion.metadata(),
                "challenger": None if served.challenger is None else served.challenger.metadata(),
                "serving": server.spec.serving.model_dump()}

    @router.get("/metrics", response_class=PlainTextResponse)  # documented as text; Prometheus' own type
    async def metrics() -> Response:
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    open_routes.include_router(router)
    return open_routes


def create_app(spec: Spec, *, poll_seconds: float | None = None, token: str | None = None,
               capture: Capture | None = None) -> FastAPI:
    """The server app for ``spec``'s registered model. Defaults: ``$MLPIPE_SERVE_POLL_SECONDS`` (30),
    ``$MLPIPE_SERVE_TOKEN`` (none), capture under the artifact store at ``spec.serving.capture_fraction``."""
    server = Server(spec, poll_seconds if poll_seconds is not None else settings.serve_poll_seconds(),
                    capture or Capture(captured_folder(spec.name), spec.serving.capture_fraction))

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(server.poll()), asyncio.create_task(server.flush_captures())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.write_captures()

    app = FastAPI(title=f"mlpipe serve: {spec.registered_model}", lifespan=lifespan)
    app.state.server = server
    app.openapi = lambda: openapi(app, server.validator, spec.serving.max_records)  # follows the champion
    app.include_router(routes(server, token if token is not None else settings.serve_token()))
    app.add_middleware(BodyLimitMiddleware, limit=spec.serving.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=server.metrics)  # the outer one: it counts the 413s too
    return app


def serve(spec: Spec, host: str = "127.0.0.1", port: int = 8000) -> str:
    """Run the server until interrupted (uvicorn, one process; scale out with replicas)."""
    uvicorn.run(create_app(spec), host=host, port=port, access_log=False, log_level="info")
    return f"mlpipe serve: {spec.registered_model} on {host}:{port} stopped"
