"""Fixtures shared by the whole suite: an isolated mlpipe environment and the bundled spec."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlpipe.core import spec, uris
from mlpipe.store import runs, s3
from tests.services import free_port

# fixtures shared by the component and integration tests (an analyzed run, a registry, a model server)
pytest_plugins = ("tests.fixtures.analysis", "tests.fixtures.serving", "tests.fixtures.tasks")
ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "dags" / "pipelines" / "loan_default.yaml"
DATA_PATH = ROOT / "dags" / "pipelines" / "data" / "lending_club.csv"


@pytest.fixture
def pipeline_env(tmp_path, monkeypatch) -> dict[str, str]:
    """Point the artifact store and MLflow at fresh folders under tmp_path; set a PII key."""
    env = {
        "MLPIPE_STORE": uris.normalize(tmp_path / "store"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "MLPIPE_MLFLOW_ARTIFACTS": uris.normalize(tmp_path / "mlartifacts"),
        "MLPIPE_PII_KEY": "test-key-not-a-secret",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def loan_spec() -> spec.Spec:
    return spec.load(SPEC_PATH)


@pytest.fixture(scope="module")
def loans():
    """The bundled loans as a DataFrame (one per test module: a module may change its copy)."""
    import pandas as pd

    return pd.read_csv(DATA_PATH)


@pytest.fixture
def start_run(pipeline_env, loan_spec):
    """Start a run of the bundled spec (optionally with overrides); returns the run URI."""
    def start(run_id: str = "test_run", **overrides) -> str:
        resolved = spec.with_overrides(loan_spec, overrides) if overrides else loan_spec
        return runs.start(resolved, run_id)

    return start


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 endpoint process on localhost (moto_server); yields its URL."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        server.kill()
        pytest.fail("moto_server did not start")
    yield url
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch) -> str:
    """A fresh bucket on the local S3 endpoint, with the client environment pointed at it."""
    for name, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test",
                        "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    s3.client.cache_clear()
    bucket = f"mlpipe-{os.getpid()}-{time.monotonic_ns()}"
    s3.client().create_bucket(Bucket=bucket)
    yield bucket
    s3.client.cache_clear()


def airflow_env(home: Path, dags_folder: Path = ROOT / "dags", **extra: str) -> dict[str, str]:
    """Environment for an Airflow subprocess with its own home and SQLite database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        **extra,
    })
    return env


def require_packages() -> None:
    """Fail (under CI) or skip (elsewhere) a test that needs the Debian packages postgresql and redis-server."""
    from tests import services

    if missing := services.missing_packages():
        message = (f"this test needs the Debian package(s) {', '.join(missing)} (real Postgres/Redis servers); "
                   f"install them with: {services.APT_HINT}")
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server():
    """A real Postgres server (Debian ``postgresql``) for the session: :class:`tests.services.Postgres`."""
    from tests import services

    require_packages()
    server = services.start_postgres()
    try:
        yield server
    finally:
        server.stop()
