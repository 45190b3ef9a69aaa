"""The register step against a real MLflow server that goes down, and two runs of the pipeline at once.

One ``mlflow server`` (SQLite backend, local artifacts) serves the module; it is stopped,
killed and restarted on the same port with the same backend, as an outage would. Two runs
are trained at the same time in two processes against it (and must not mix); their
``mlpipe step register`` processes then race for the promotion; clones of one of them
(copies of its step folders, pointing at its MLflow run) go through the outages.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlpipe.core import uris
from mlpipe.core.errors import EXIT_UNAVAILABLE
from mlpipe.core.results import Analyze, Register, Train
from mlpipe.registry.names import AUDIT_TAG
from mlpipe.registry.tracking import RUN_URI_TAG
from mlpipe.steps.register import DECISIONS
from mlpipe.store import audit, runs, storage
from mlpipe.store.runs import OPTIONS, RESULT, Run
from tests import services
from tests.fixtures.analysis import TRAINED, clone, start

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
# Thresholds any trained model passes: these tests are about the registry, not the model's quality.
LENIENT = {"thresholds.min_roc_auc": 0.5, "thresholds.min_lift_over_baseline": -1.0, "thresholds.fairness": None}
# Boosts briefly: the two runs train at once on a small machine.
QUICK = {"training.num_boost_round": 60, "training.early_stopping_rounds": 10, "training.params.eta": 0.3}
RACED = "raced_model"
STEP_TIMEOUT = 300


@dataclass
class Registry:
    """The module's MLflow server, which the tests stop, kill and start again on the same port and backend."""

    backend: str
    artifacts: str
    folder: Path
    server: services.MlflowServer

    @property
    def url(self) -> str:
        return self.server.url

    def restart(self) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        self.server = services.start_mlflow(self.backend, self.artifacts, self.folder, services.clean_env(),
                                            port=port)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[Registry]:
    folder = tmp_path_factory.mktemp("registry")
    backend, artifacts = f"sqlite:///{folder / 'mlflow.db'}", uris.normalize(folder / "mlartifacts")
    server = Registry(backend, artifacts, folder, services.start_mlflow(backend, artifacts, folder,
                                                                        services.clean_env()))
    try:
        yield server
    finally:
        server.server.stop()


@pytest.fixture(scope="module")
def env(registry, tmp_path_factory) -> Iterator[dict[str, str]]:
    """The environment of this module and of its step processes: a fresh store, the MLflow server."""
    settings = {"MLPIPE_STORE": uris.normalize(tmp_path_factory.mktemp("store")),
                "MLFLOW_TRACKING_URI": registry.url, "MLPIPE_PII_KEY": "test-key-not-a-secret"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings.items():
            patch.setenv(name, value)
        patch.delenv("MLPIPE_MLFLOW_ARTIFACTS", raising=False)  # the server's proxied artifact store
        yield services.clean_env(**settings, PYTHONPATH=f"{ROOT / 'plugins'}{':'}{ROOT}")


def python(env: dict[str, str], code: str, *args: str) -> subprocess.Popen:
    """A Python process running ``code`` (with ``sys.argv[1:]`` = ``args``) in the steps' environment."""
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def register(env: dict[str, str], uri: str) -> subprocess.CompletedProcess:
    """``mlpipe step register`` of run ``uri``, as a runtime runs it."""
    return subprocess.run([sys.executable, "-m", "mlpipe", "step", "register", "--run", uri], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=STEP_TIMEOUT)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, err = process.communicate(timeout=STEP_TIMEOUT)
    return process.returncode, err


@pytest.fixture(scope="module")
def trained(env) -> list[str]:
    """Two runs of the same pipeline (run ids ``alpha`` and ``beta``), trained at the same time in two processes."""
    uris = [start(run_id, **QUICK, **LENIENT, model_name=RACED) for run_id in ("alpha", "beta")]
    code = ("import sys; from tests.fixtures.analysis import TRAINED, run_steps; "
            "run_steps(sys.argv[1], TRAINED)")
    processes = [python(env, code, uri) for uri in uris]
    for process in processes:
        code, err = finish(process)
        assert code == 0, err[-3000:]
    return uris


def decision_events(pipeline: str, model: str) -> list[dict]:
    return [event for event in audit.history(pipeline) if event["model"] == model and event["action"] in DECISIONS]


def registry_state(model: str) -> tuple[list[int], dict[str, int]]:
    """The model's version numbers and its aliases."""
    client = MlflowClient()
    found = sorted(int(v.version) for v in client.search_model_versions(f"name = '{model}'"))
    return found, {alias: int(v) for alias, v in client.get_registered_model(model).aliases.items()}


def unavailable_message(url: str, command: str = "step") -> str:
    return (rf"mlpipe {command}: error: MLflow tracking server {re.escape(url)} did not answer "
            r"\((ConnectionError|ChunkedEncodingError) on /\S+ after 3 retries, MLFLOW_HTTP_REQUEST_MAX_RETRIES\); "
            r"retry once it is back")


def test_runs_trained_at_once_never_mix(trained):
    store = runs.store_uri()
    assert {"alpha", "beta"} <= set(storage.children(uris.join(store, "loan_default", "runs")))
    mlflow_runs = set()
    for uri in trained:
        run = Run(uri)
        assert storage.children(uri) == sorted([*TRAINED, "options.json", "spec.json"])
        for step in TRAINED:
            result = run.result(step)
            assert result["run"] == uri
            # Every store path a result names is in its own run folder (the input data is not in the store).
            paths = [value for key, value in result.items()
                     if key != "run" and isinstance(value, str) and value.startswith(store)]
            assert paths and all(path.startswith(uri + "/") for path in paths), (step, paths)
        mlflow_run = MlflowClient().get_run(run.result(Train).mlflow_run_id)
        assert mlflow_run.data.tags[RUN_URI_TAG] == uri
        assert mlflow_run.data.metrics["analysis_lift"] == run.result(Analyze).metrics["lift"]
        mlflow_runs.add(mlflow_run.info.run_id)
    assert len(mlflow_runs) == 2


def test_two_registers_at_once_decide_one_after_the_other(trained, env, tmp_path):
    for uri in trained:  # both are promoted whatever they score: the test is about the order of decisions
        storage.write_json(uris.join(uri, OPTIONS), {"force_promote": True})
    go = tmp_path / "go"
    code = ("import sys, time, pathlib; import mlflow, mlpipe.steps.register; from mlpipe.cli import main; "
            "pathlib.Path(sys.argv[3]).touch(); go = pathlib.Path(sys.argv[2])\n"
            "while not go.exists(): time.sleep(0.005)\n"
            "sys.exit(main(['step', 'register', '--run', sys.argv[1]]))")
    processes = [python(env, code, uri, str(go), str(tmp_path / f"ready-{n}")) for n, uri in enumerate(trained)]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{n}").exists() for n in range(2)) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # both processes have imported everything: they start registering within milliseconds
    for process in processes:
        code, err = finish(process)
        assert code == 0, err[-3000:]

    results = {uri: Run(uri).result(Register) for uri in trained}
    first, second = decision_events("loan_default", RACED)  # exactly two, oldest first
    assert {first["run"], second["run"]} == set(trained)
    assert (first["compared_with"], first["promoted"]) == (None, True)
    assert (second["compared_with"], second["replaced"], second["promoted"]) == (first["version"], first["version"],
                                                                                 True)
    assert registry_state(RACED) == ([1, 2], {"champion": second["version"], "previous-champion": first["version"],
                                              "challenger": 2})
    for uri, result in results.items():  # one version per run, carrying its own run's tags
        version = MlflowClient().get_model_version(RACED, str(result.version))
        assert (version.run_id, version.tags[RUN_URI_TAG]) == (Run(uri).result(Train).mlflow_run_id, uri)


def test_register_while_mlflow_is_down_fails_clearly_then_registers_once(trained, env, registry):
    uri = clone(trained[0], "outage", TRAINED, model_name="outage_model")
    registry.server.stop()
    down = register(env, uri)
    assert down.returncode == EXIT_UNAVAILABLE
    # "after 3 retries": the CLI's bound, not MLflow's default of 7 (about four minutes of retrying)
    assert re.fullmatch(unavailable_message(registry.url), down.stderr.splitlines()[-1])
    assert "Traceback" not in down.stderr
    assert not storage.exists(Run(uri).path("register", RESULT))
    rollback = subprocess.run([sys.executable, "-m", "mlpipe", "rollback", "outage_model", "--reason", "test"],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert rollback.returncode == EXIT_UNAVAILABLE and "Traceback" not in rollback.stderr
    assert re.fullmatch(unavailable_message(registry.url, "rollback"), rollback.stderr.splitlines()[-1])

    registry.restart()
    up = register(env, uri)
    assert up.returncode == 0, up.stderr[-3000:]
    result = Run(uri).result(Register)
    assert (result.version, result.promoted, result.aliases) == (1, True, ["challenger", "champion"])
    assert registry_state("outage_model") == ([1], {"champion": 1, "challenger": 1})
    events = decision_events("loan_default", "outage_model")
    assert [event["uri"] for event in events] == [result.audit]

    again = register(env, uri)  # a third time: nothing changes
    assert again.returncode == 0, again.stderr[-3000:]
    assert {**Run(uri).result(Register).model_dump(), "seconds": 0} == {**result.model_dump(), "seconds": 0}
    assert registry_state("outage_model") == ([1], {"champion": 1, "challenger": 1})
    assert decision_events("loan_default", "outage_model") == events


def test_mlflow_dying_after_the_version_is_created_leaves_a_retry_one_version_one_decision(trained, env, registry):
    uri = clone(trained[0], "crash", TRAINED, model_name="crash_model")
    process = subprocess.Popen([sys.executable, "-m", "mlpipe", "step", "register", "--run", uri], env=env,
                               cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client, deadline = MlflowClient(), time.monotonic() + 120
    while not client.search_model_versions("name = 'crash_model'"):  # the version appears: the server crashes
        assert process.poll() is None and time.monotonic() < deadline, "register ended before creating a version"
        time.sleep(0.02)
    registry.server.service.kill()
    code, err = finish(process)
    assert code == EXIT_UNAVAILABLE, err[-3000:]
    assert re.fullmatch(unavailable_message(registry.url), err.splitlines()[-1])

    registry.restart()
    assert registry_state("crash_model") == ([1], {})  # created, not decided: no alias yet
    assert AUDIT_TAG not in client.get_model_version("crash_model", "1").tags
    assert decision_events("loan_default", "crash_model") == []

    retry = register(env, uri)
    assert retry.returncode == 0, retry.stderr[-3000:]
    result = Run(uri).result(Register)
    assert (result.version, result.promoted) == (1, True)
    assert registry_state("crash_model") == ([1], {"champion": 1, "challenger": 1})
    assert [event["uri"] for event in decision_events("loan_default", "crash_model")] == [result.audit]
    assert client.get_model_version("crash_model", "1").tags[AUDIT_TAG] == result.audit
