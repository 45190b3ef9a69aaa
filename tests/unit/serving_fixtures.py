"""Fixtures for the model server tests: a registry with a champion and a challenger, a running server.

Import the ``*_fixture`` functions into a test module to use them by their pytest names
(``registry``, ``frame``, ``masked``, ``champion``, ``server``; they need ``analyzed_run`` and
``module_env`` from :mod:`tests.unit.analysis_fixtures`, imported alongside). :func:`running`
serves any app with a real uvicorn on a free localhost port.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn
from mlflow import MlflowClient

from mlpipe.core import uris
from mlpipe.data.pii import keyed_hash
from mlpipe.registry.names import CHAMPION, THRESHOLD_TAG
from mlpipe.serving.app import create_app
from mlpipe.serving.capture import Capture
from mlpipe.serving.loader import ServedModel, load
from mlpipe.steps import run_step
from mlpipe.store.runs import Run
from tests.conftest import DATA_PATH, free_port
from tests.unit.analysis_fixtures import TRAINED, clone, replace_result

LENIENT = {"thresholds.min_roc_auc": 0.5, "thresholds.min_lift_over_baseline": -1.0}
CHALLENGER_THRESHOLD = 0.05  # far below the champion's: the two versions decide differently


# --- a registry with two versions: 1 = champion, 2 = challenger (same booster, another threshold) -----------

@pytest.fixture(scope="module", name="registry")
def registry_fixture(analyzed_run) -> dict[str, Any]:
    first = clone(analyzed_run, "served_v1", TRAINED, **LENIENT)
    run_step("register", first)
    second = clone(analyzed_run, "served_v2", TRAINED, **LENIENT)
    metrics = Run(second).result("analyze")["metrics"]
    replace_result(second, "analyze", metrics={**metrics, "threshold": CHALLENGER_THRESHOLD})
    run_step("register", second)
    name = Run(first).spec.registered_model
    set_aliases(name, champion=1, challenger=2)
    client = MlflowClient()
    return {"name": name, "spec": Run(first).spec, "thresholds": {
        v: float(client.get_model_version(name, str(v)).tags[THRESHOLD_TAG]) for v in (1, 2)}}


def set_aliases(name: str, **versions: int) -> None:
    for alias, version in versions.items():
        MlflowClient().set_registered_model_alias(name, alias, str(version))


@pytest.fixture(scope="module", name="frame")
def frame_fixture() -> pd.DataFrame:
    """Raw rows, as clients send them (PII in clear)."""
    return pd.read_csv(DATA_PATH).drop(columns=["Class"]).head(400)


@pytest.fixture(scope="module", name="masked")
def masked_fixture(frame, module_env) -> pd.DataFrame:
    """The same rows with the spec's PII rules applied, as the model sees them."""
    rows = frame.copy()
    rows["addr_state"] = keyed_hash(rows["addr_state"], module_env["MLPIPE_PII_KEY"].encode())
    return rows


@pytest.fixture(scope="module", name="champion")
def champion_fixture(registry) -> ServedModel:
    return load(MlflowClient(), registry["name"], 1, CHAMPION)


def records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts of plain Python values (null for missing)."""
    return [{c: None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for c, v in row.items()}
            for row in frame[columns].to_dict("records")]


@contextmanager
def running(app) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free localhost port (in a thread) until the block ends."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def wait_ready(url: str, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/ready", headers=headers).status_code != 200:
        assert time.monotonic() < deadline, "the server never became ready"
        time.sleep(0.1)


@pytest.fixture(scope="module", name="server")
def server_fixture(registry, tmp_path_factory) -> Iterator[str]:
    """A server of the champion (no A/B, no shadow), capturing nothing."""
    capture = Capture(uris.normalize(tmp_path_factory.mktemp("unused-capture")), 0.0)
    with running(create_app(registry["spec"], poll_seconds=3600, token="", capture=capture)) as url:
        wait_ready(url)
        yield url


def predict(url: str, rows: list[dict[str, Any]], **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/predict", json={"records": rows}, timeout=30, **kwargs)
