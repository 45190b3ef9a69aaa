"""The AirflowPlugin of the ops view: mounts the ops app at ``/mlpipe`` and adds *Models* to the nav.

Airflow loads plugins in every process (scheduler, workers, dag-processor, api-server), so this
module only names things: the FastAPI app is built the first time the api-server routes a
request to it (:class:`LazyApp`), and FastAPI, Jinja2, MLflow and prometheus_client are
imported then. The step operators carry their own extra links (:mod:`mlpipe.orchestration.links`).
"""

from __future__ import annotations

import importlib
import threading
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from mlpipe.core.urls import URL_PREFIX

APP_FACTORY = "mlpipe.ui.app:create_app"


class LazyApp:
    """An ASGI app that builds the real one (``module:factory``) on its first request."""

    def __init__(self, factory: str = APP_FACTORY) -> None:
        self.factory = factory
        self._app: Any = None
        self._lock = threading.Lock()

    def app(self) -> Any:
        """The real app, built once."""
        if self._app is None:
            with self._lock:
                if self._app is None:
                    module, name = self.factory.split(":")
                    self._app = getattr(importlib.import_module(module), name)()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.app()(scope, receive, send)

    def __repr__(self) -> str:
        return f"LazyApp({self.factory})"


class MlpipeUiPlugin(AirflowPlugin):
    """Models page (nav *Models*), artifact and rollback routes, ``/mlpipe/metrics``."""

    name = "mlpipe_ui"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "mlpipe ops view"}]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {"name": "Models", "href": f"{URL_PREFIX}/", "destination": "nav", "url_route": "mlpipe-models",
         "category": "browse"}]
