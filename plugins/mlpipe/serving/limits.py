"""The request body limit of ``mlpipe serve`` (``spec.serving.max_body_bytes``), enforced before the app reads it.

A request whose ``Content-Length`` is past the limit is answered 413 at once: the app
never runs and the body is never read. A body without a length (chunked) is counted as
the app reads it, and refused as soon as the bytes received pass the limit, so memory
never holds more than the limit plus one chunk. Either way the 413's ``detail`` names the
size, the limit and the setting, and nothing of the request reaches a model or the capture.
(The record-count limit, ``spec.serving.max_records``, is the request validator's.)

This module exists only for the server process: it imports Starlette at the top.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

SETTING = "serving.max_body_bytes"


class BodyTooLarge(Exception):
    """Raised by the counting ``receive`` once a body without a Content-Length passes the limit."""

    def __init__(self, received: int) -> None:
        super().__init__(received)
        self.received = received


def declared_length(scope: dict[str, Any]) -> int | None:
    """The request's Content-Length, or ``None`` when it has none (or one that is not a number:
    the server rejects that before the app runs)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimitMiddleware:
    """Refuses a request body of more than ``limit`` bytes with a 413 naming it (pure ASGI)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope)
        if declared is not None and declared > self.limit:
            await self.refuse(f"request body of {declared} bytes", scope, receive, send)
            return
        received = 0

        async def counted() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(received)
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLarge as error:  # raised while the app read the body: it has sent nothing yet
            await self.refuse(f"request body of at least {error.received} bytes", scope, receive, send)

    async def refuse(self, what: str, scope: dict, receive: Any, send: Any) -> None:
        detail = f"{what} exceeds the limit of {self.limit} bytes ({SETTING})"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
