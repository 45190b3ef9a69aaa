"""Throwaway real servers for the integration tests: Postgres, Redis, the MLflow server, Airflow with Celery.

Every server is a real process started on a free localhost port, with its files and its
log in a temporary folder, and is stopped (its whole process tree) by :meth:`Service.stop`.
Nothing here mocks anything; when a server does not come up, :class:`ServiceError` says
which one and shows the end of its log.

Postgres and Redis come from the Debian packages ``postgresql`` and ``redis-server``
(:func:`missing_packages` says which are absent). Postgres refuses to run as root, so
when the tests run as root its processes run as the ``postgres`` OS user, in a data
folder that user owns.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# A process that is already gone is not an error when stopping it.
_ignore_gone = functools.partial(contextlib.suppress, ProcessLookupError, psutil.NoSuchProcess, PermissionError)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
APT_HINT = "apt-get update && apt-get install -y postgresql redis-server"
# Environment variables of the calling process that must not leak into a service's environment.
PRIVATE_PREFIXES = ("AIRFLOW", "MLPIPE_", "MLFLOW_", "AWS_")


class ServiceError(RuntimeError):
    """A server that did not start (or stopped): the message names it and ends with its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def postgres_bin() -> Path | None:
    """The ``bin`` folder of the newest Debian Postgres (``/usr/lib/postgresql/<version>/bin``), if any."""
    found = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")]
    return max(found, key=lambda p: int(p.parent.name), default=None)


def missing_packages() -> list[str]:
    """The Debian packages the real-server tests need and this machine lacks."""
    missing = [] if postgres_bin() else ["postgresql"]
    return missing + ([] if shutil.which("redis-server") else ["redis-server"])


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without Airflow/mlpipe/MLflow/AWS settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(PRIVATE_PREFIXES)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


@dataclass
class Service:
    """One started server process (its own process group) and its log file."""

    name: str
    process: subprocess.Popen
    log: Path
    stop_signal: int = signal.SIGTERM

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def fail(self, what: str) -> ServiceError:
        """An error saying ``what`` went wrong with this server, with its log tail."""
        state = "running" if self.alive() else f"exited with status {self.process.returncode}"
        return ServiceError(f"{self.name} ({state}): {what}; log {self.log}, last lines:\n{self.tail()}")

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float = 120) -> None:
        """Poll ``check`` until it is true; fail naming ``what`` when the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if not self.alive():
                raise self.fail(f"exited before {what}")
            time.sleep(0.3)
        raise self.fail(f"not {what} after {timeout:.0f} s")

    def tree(self) -> list[psutil.Process]:
        """The process and all its descendants (also those that started their own session)."""
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> list[psutil.Process]:
        """SIGKILL the process, its process group and every descendant at once (a crash); returns them."""
        victims = self.tree()
        self._kill(victims)
        return victims

    def _kill(self, victims: list[psutil.Process]) -> None:
        """SIGKILL the process group and ``victims`` (the tree as it was); wait until they are gone."""
        with _ignore_gone():
            os.killpg(self.process.pid, signal.SIGKILL)
        for proc in victims:
            with _ignore_gone():
                proc.kill()
        psutil.wait_procs(victims, timeout=10)
        if self.process.poll() is None:
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        """Ask the server to stop (``stop_signal`` to the process group), then kill what is left of its tree."""
        victims = self.tree()
        if self.alive():
            with _ignore_gone():
                os.killpg(self.process.pid, self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        self._kill(victims)


def spawn(name: str, command: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None,
          user: str | None = None, stop_signal: int = signal.SIGTERM) -> Service:
    """Start ``command`` in a new session (process group) with stdout and stderr appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=cwd, start_new_session=True, user=user, group=user,
                                   extra_groups=[] if user else None)
    return Service(name, process, log, stop_signal)


def _run(command: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if out.returncode != 0:
        raise ServiceError(f"{what} failed ({out.returncode}): {' '.join(command)}\n"
                           f"{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


# --- Postgres -----------------------------------------------------------------------------------------


@dataclass
class Postgres:
    """A Postgres server of its own: superuser ``user``/``password`` on 127.0.0.1:``port``."""

    port: int
    user: str
    password: str
    folder: Path
    service: Service

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        """The SQLAlchemy URL of ``database`` (``driver`` ``postgresql`` for a plain libpq URL)."""
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                                dbname=database)

    def create_database(self, name: str) -> str:
        """Create database ``name`` (a fresh one) and return its SQLAlchemy URL."""
        connection = self.connect()
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)

    def stop(self) -> None:
        self.service.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres(timeout: float = 60) -> Postgres:
    """initdb a new cluster in a temporary folder and start ``postgres`` on a free port (fsync off: a test DB)."""
    binaries = postgres_bin()
    if binaries is None:
        raise ServiceError(f"Postgres is not installed (Debian package postgresql): {APT_HINT}")
    # pytest's tmp folders are private to root; Postgres (run as `postgres`) needs a folder of its own.
    folder = Path(tempfile.mkdtemp(prefix="mlpipe-pg-"))
    user = "postgres" if os.geteuid() == 0 else None
    data, password = folder / "data", secrets.token_hex(12)
    pwfile = folder / "pwfile"
    pwfile.write_text(password + "\n")
    if user:
        shutil.chown(folder, user, user)
        shutil.chown(pwfile, user, user)
    _run([str(binaries / "initdb"), "-D", str(data), "-U", "mlpipe", f"--pwfile={pwfile}", "-E", "UTF8",
          "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync"], "initdb", user=user, group=user,
         extra_groups=[] if user else None, cwd=folder, timeout=120)
    port = free_port()
    service = spawn("postgres", [
        str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-k", str(folder),
        "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300", "-c", "fsync=off",
        "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "shared_buffers=64MB",
    ], folder / "postgres.log", cwd=folder, user=user, stop_signal=signal.SIGINT)  # SIGINT: fast shutdown
    server = Postgres(port, "mlpipe", password, folder, service)

    def accepts() -> bool:
        try:
            server.connect().close()
        except Exception:
            return False
        return True

    try:
        service.wait_for(accepts, "accepting connections", timeout)
    except ServiceError:
        server.stop()
        raise
    return server


# --- Redis --------------------------------------------------------------------------------------------


@dataclass
class Redis:
    """A Redis server on 127.0.0.1:``port`` (no persistence)."""

    port: int
    service: Service

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.service.stop()


def start_redis(folder: Path, timeout: float = 30) -> Redis:
    """Start ``redis-server`` on a free port, without snapshots or an append-only file."""
    if not shutil.which("redis-server"):
        raise ServiceError(f"Redis is not installed (Debian package redis-server): {APT_HINT}")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    service = spawn("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(folder)], folder / "redis.log")
    service.wait_for(lambda: port_open(port), f"listening on {port}", timeout)
    return Redis(port, service)


# --- MLflow -------------------------------------------------------------------------------------------


def http_ok(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=3).status_code == 200
    except requests.RequestException:
        return False


@dataclass
class MlflowServer:
    """An MLflow tracking server (``url``) whose artifacts it serves from ``artifacts``."""

    url: str
    artifacts: str
    service: Service

    def wait(self, timeout: float = 180) -> None:
        """Wait until the server answers ``/health`` (it migrates its database first)."""
        self.service.wait_for(lambda: http_ok(f"{self.url}/health"), "answering /health", timeout)

    def stop(self) -> None:
        self.service.stop()


def start_mlflow(backend: str, artifacts: str, folder: Path, env: dict[str, str], wait: bool = True,
                 port: int | None = None) -> MlflowServer:
    """``mlflow server`` on ``port`` (default: a free one): runs and registry in ``backend``, artifacts
    proxied to ``artifacts``.

    ``env`` carries the S3 endpoint and credentials when ``artifacts`` is ``s3://...``. With
    ``wait=False`` it returns at once; call :meth:`MlflowServer.wait` before using it. Started
    again with the same ``backend``, ``artifacts`` and ``port``, it is the same server after a restart.
    """
    port = port or free_port()
    service = spawn("mlflow server", [
        str(BIN / "mlflow"), "server", "--backend-store-uri", backend, "--artifacts-destination", artifacts,
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ], folder / "mlflow.log", env=env, cwd=folder)
    server = MlflowServer(f"http://127.0.0.1:{port}", artifacts, service)
    if wait:
        server.wait()
    return server


def start_model_server(spec_path: Path, folder: Path, env: dict[str, str], timeout: float = 120) -> tuple[str, Service]:
    """``mlpipe serve <spec_path>`` on a free port with ``env`` (store, MLflow, PII key); its URL once
    ``/ready`` answers 200 (a champion is loaded) and the :class:`Service`."""
    port = free_port()
    service = spawn("mlpipe serve", [str(BIN / "python"), "-m", "mlpipe", "serve", str(spec_path), "--port", str(port)],
                    folder / "mlpipe-serve.log", env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        service.wait_for(lambda: http_ok(f"{url}/ready"), "ready (a champion loaded)", timeout)
    except ServiceError:
        service.stop()
        raise
    return url, service


# --- Airflow ------------------------------------------------------------------------------------------

ADMIN = "admin"


@dataclass
class Airflow:
    """An Airflow 3 deployment with the Celery executor: its home, environment and running processes.

    :meth:`start` migrates the metadata database and starts the api-server, scheduler,
    dag-processor and one Celery worker; :meth:`api` talks to the public REST API as ``admin``.
    """

    home: Path
    env: dict[str, str]
    port: int
    password: str
    services: dict[str, Service] = field(default_factory=dict)
    worker: Service | None = None  # the Celery worker started last
    _token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def airflow(self, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command in this deployment's environment plus ``env`` (raises on failure)."""
        return _run([str(BIN / "airflow"), *args], f"airflow {args[0]}", env={**self.env, **env}, cwd=self.home,
                    timeout=timeout)

    def _spawn(self, key: str, *args: str) -> Service:
        service = spawn(f"airflow {key}", [str(BIN / "airflow"), *args], self.home / "logs" / f"{key}.log",
                        env=self.env, cwd=self.home)
        self.services[key] = service
        return service

    def start(self, timeout: float = 240, before_processes: Callable[[], object] | None = None) -> None:
        """Migrate the database, start every process and wait until each one is up.

        ``before_processes`` is called between the migration and the start of the processes
        (e.g. to wait for a server that the tasks need).
        """
        self.airflow("db", "migrate")
        if before_processes:
            before_processes()
        api = self._spawn("api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.port),
                          "--workers", "1")
        self._spawn("scheduler", "scheduler")
        self._spawn("dag-processor", "dag-processor")
        self.start_worker(timeout)
        api.wait_for(lambda: http_ok(f"{self.url}/api/v2/monitor/health"), "answering its health check", timeout)
        for key in ("scheduler", "dag-processor"):
            self.services[key].wait_for(lambda key=key: self.healthy(key), "healthy (API health check)", timeout)

    def healthy(self, component: str) -> bool:
        import requests

        name = component.replace("-", "_")
        try:
            health = requests.get(f"{self.url}/api/v2/monitor/health", timeout=3).json()
        except (requests.RequestException, ValueError):
            return False
        return (health.get(name) or {}).get("status") == "healthy"

    def start_worker(self, timeout: float = 240) -> Service:
        """Start a Celery worker (``worker-<n>``) and wait until it is ready for tasks."""
        key = f"worker-{sum(k.startswith('worker') for k in self.services) + 1}"
        worker = self._spawn(key, "celery", "worker", "--celery-hostname", f"{key}@%h", "--concurrency", "2",
                             "--skip-serve-logs", "--without-gossip", "--without-mingle")
        worker.wait_for(lambda: " ready." in worker.tail(200), "ready for tasks", timeout)
        self.worker = worker
        return worker

    def stop(self) -> None:
        """Stop every process (workers first, so that no task is left running)."""
        for key in sorted(self.services, key=lambda k: not k.startswith("worker")):
            self.services[key].stop()

    def log_tails(self, lines: int = 30) -> str:
        """The end of every process's log, for a failure message."""
        return "\n".join(f"--- {service.name} ({service.log}):\n{service.tail(lines)}"
                         for service in self.services.values())

    def api(self, method: str, path: str, **kwargs):
        """A request to the public API (``/api/v2/...``) with a JWT from ``POST /auth/token``; returns the JSON."""
        import requests

        if self._token is None:
            response = requests.post(f"{self.url}/auth/token", json={"username": ADMIN, "password": self.password},
                                     timeout=30)
            if response.status_code >= 300:
                raise ServiceError(f"POST /auth/token: {response.status_code} {response.text}")
            self._token = response.json()["access_token"]
        response = requests.request(method, f"{self.url}/api/v2/{path.lstrip('/')}", timeout=30,
                                    headers={"Authorization": f"Bearer {self._token}"}, **kwargs)
        if response.status_code >= 300:
            raise ServiceError(f"{method} /api/v2/{path}: {response.status_code} {response.text}")
        return response.json() if response.content else None


def airflow_celery(home: Path, database: str, broker: str, result_backend: str,
                   heartbeat_timeout: int = 20, **extra: str) -> Airflow:
    """An (unstarted) Airflow with ``CeleryExecutor`` on ``database``/``broker``; ``extra`` goes into its env.

    Tasks whose worker stops heartbeating for ``heartbeat_timeout`` seconds are failed (and
    retried) by the scheduler, checked every few seconds. The schedules of DAGs are off
    (``use_job_schedule``): only triggered runs run. The ``admin`` user's password is written
    to the simple auth manager's passwords file.
    """
    home.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({ADMIN: password}))
    port = free_port()
    env = clean_env(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{ADMIN}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=database,
        AIRFLOW__CELERY__BROKER_URL=broker,
        AIRFLOW__CELERY__RESULT_BACKEND=result_backend,
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__SECRET_KEY=secrets.token_hex(16),
        AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=str(heartbeat_timeout),
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="3",
        AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="1",
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL="300",
        **extra,
    )
    return Airflow(home, env, port, password)
