"""Every step of the training, scoring and monitoring DAGs, run as the pod the kubernetes runtime builds for it.

Each pod comes from the operator's own ``build_pod_request_obj`` (tests/step_pods.py) with the bundled node
pools, so the images are the ones ``make images`` tags (ghcr.io/mlpipe/task and task-gpu), and is played by
podman (tests/containers/podman.py) in DAG order: as UID 10001 on a read-only root filesystem, its
credentials from a Secret and its settings from a ConfigMap, reading and writing a real S3 endpoint
(moto_server), a real MLflow server and a Postgres Optuna study on the host.

The same spec and data run through the ``local`` runtime (the same step command in a subprocess here) against
a store, MLflow server and study of their own, and the two runs must agree: the same data version, the same
split, the same tuned parameters, the same model scores and the same promotion, then the same scored batch
and the same monitoring verdict.

Needs the images: ``make images`` (``make test`` builds them first).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException

from mlpipe.compute import node_pools
from mlpipe.core.results import Ingest, Score
from mlpipe.data import datasets
from mlpipe.model.booster import CUDA_FALLBACK
from mlpipe.orchestration import factory
from mlpipe.orchestration.protocol import step_command
from mlpipe.store import runs, s3, storage
from tests import services, step_pods
from tests.comparison import comparable
from tests.conftest import DATA_PATH, ROOT, SPEC_PATH, require_packages
from tests.containers import podman

pytestmark = pytest.mark.containers

AWS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "mlpipe-containers"
AIRFLOW_IMAGE = "ghcr.io/mlpipe/airflow:0.1.0"
POOLS = node_pools.load(node_pools.DEFAULT_FILE)  # the bundled node pools: their images, Secret and ConfigMap
SECRET = next(source.secret for source in POOLS.env_from if source.secret)
CONFIG_MAP = next(source.config_map for source in POOLS.env_from if source.config_map)


def images() -> list[str]:
    return [POOLS.pools["cpu"].image, POOLS.pools["gpu"].image, AIRFLOW_IMAGE]


@pytest.fixture(scope="module", autouse=True)
def built_images():
    """The images of the bundled node pools and the Airflow image, built by ``make images``."""
    if podman.engine() is None:
        pytest.fail("podman is missing: apt-get install -y podman buildah mmdebstrap, then make images")
    if missing := [image for image in images() if not podman.image_exists(image)]:
        pytest.fail(f"images not built: {', '.join(missing)}; build them with: make images")


@contextlib.contextmanager
def environment(env: dict[str, str]):
    """``env`` in this process's environment for the block (the start_run task runs here, as on a worker)."""
    saved = dict(os.environ)
    os.environ.update(env)
    s3.client.cache_clear()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        s3.client.cache_clear()


@dataclass
class Runtime:
    """One runtime's world: its store, MLflow server and Optuna study; ``settings`` and ``credentials`` are
    what a pod gets from its ConfigMap and its Secret, and a local step from its environment."""

    name: str
    spec_path: Path
    settings: dict[str, str]
    credentials: dict[str, str]
    folder: Path
    pod_logs: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {**self.settings, **self.credentials}

    def run_dag(self, dag, kind: str) -> str:
        """Start a run of ``dag`` as its start_run task does, then run each step task in order; the run's URI."""
        with environment(self.env):
            run_uri = factory.start_run(str(self.spec_path), {}, f"manual__{self.name}_{kind}", kind)
        for operator in step_pods.step_operators(dag, run_uri):
            self.run_step(operator)
        return run_uri

    def run_step(self, operator) -> podman.PodEnd:
        if self.name == "local":
            done = subprocess.run(step_command(operator.step, operator.run_uri, operator.shard),
                                  env=services.clean_env(**self.env), capture_output=True, text=True, timeout=900)
            end = podman.PodEnd(done.returncode, done.stdout + done.stderr)
        else:
            manifest = step_pods.pod_manifest(operator)
            end = podman.play(manifest, self.folder, [config_map(self.settings)])
            self.pod_logs[f"{operator.task_id}:{operator.shard}"] = end.log
        assert end.exit_code == 0, f"{self.name}: {operator.task_id} exited {end.exit_code}:\n{end.log[-4000:]}"
        return end


def config_map(settings: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIG_MAP}, "data": settings}


def secret(credentials: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET},
            "type": "Opaque", "stringData": credentials}


def s3_spec(folder: Path) -> Path:
    """The shipped spec with its data, profile and scoring batch on S3 (a pod sees no host file), 6 trials."""
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    profile = SPEC_PATH.with_name("loan_default.profile.json")
    for path in (DATA_PATH, profile):
        client.upload_file(str(path), BUCKET, f"data/{path.name}")
    document = yaml.safe_load(SPEC_PATH.read_text())
    document["data"]["source"] = document["scoring"]["source"] = f"s3://{BUCKET}/data/{DATA_PATH.name}"
    document["validation"]["profile"] = f"s3://{BUCKET}/data/{profile.name}"
    document["tuning"]["trials"] = 6
    path = folder / "loan_default.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory, s3_endpoint):
    """The pods' world and the local runtime's, side by side on one S3 endpoint and one Postgres."""
    require_packages()
    folder = tmp_path_factory.mktemp("containers")
    aws = {**AWS, "AWS_ENDPOINT_URL": s3_endpoint}
    with environment(aws):
        spec_path = s3_spec(folder)
    postgres = services.start_postgres()
    servers, worlds = [], {}
    try:
        for name in ("pods", "local"):
            server = services.start_mlflow(f"sqlite:///{folder}/{name}-mlflow.db", f"s3://{BUCKET}/{name}/mlflow",
                                           folder / name, services.clean_env(**aws, MLFLOW_S3_ENDPOINT_URL=s3_endpoint))
            servers.append(server)
            worlds[name] = Runtime(
                name, spec_path, folder=folder / name,
                settings={"MLPIPE_STORE": f"s3://{BUCKET}/{name}/store", "MLFLOW_TRACKING_URI": server.url,
                          "AWS_ENDPOINT_URL": s3_endpoint, "AWS_DEFAULT_REGION": AWS["AWS_DEFAULT_REGION"]},
                credentials={"AWS_ACCESS_KEY_ID": AWS["AWS_ACCESS_KEY_ID"],
                             "AWS_SECRET_ACCESS_KEY": AWS["AWS_SECRET_ACCESS_KEY"],
                             "MLPIPE_PII_KEY": "test-key-not-a-secret",
                             "MLPIPE_OPTUNA_STORAGE": postgres.create_database(f"optuna_{name}")})
        podman.secret(secret(worlds["pods"].credentials))
        yield worlds
    finally:
        for server in servers:
            server.stop()
        postgres.stop()
        podman.podman("secret", "rm", SECRET, check=False)


# What differs between two runs of the same spec on the same data by nature: timings, the ids MLflow hands out
# and the time in an audit record's name.
def outputs(runtime: Runtime, run_uri: str, steps: list[str]) -> dict:
    """The results of ``steps`` of a run, comparable (:func:`tests.comparison.comparable`): the runtime's own
    names (its store prefix, run ids and Optuna database) made neutral."""
    names = {own: own.replace(runtime.name, "<runtime>")
             for own in (f"/{runtime.name}/", f"manual__{runtime.name}_", f"optuna_{runtime.name}")}
    with environment(runtime.env):
        return {step: comparable(runs.Run(run_uri).result(step), names) for step in steps}


def predictions(runtime: Runtime, run_uri: str) -> pd.DataFrame:
    with environment(runtime.env):
        return datasets.read(runs.Run(run_uri).result(Score).predictions)


@pytest.fixture(scope="module")
def training(runtimes):
    """The training DAG in both runtimes: ``{runtime: run uri}``."""
    dag = factory.training_dag(runtimes["pods"].spec_path, "kubernetes")
    return {name: runtime.run_dag(dag, runs.TRAINING) for name, runtime in runtimes.items()}


def test_the_training_pods_run_every_step_and_agree_with_the_local_runtime(runtimes, training):
    played = [key.split(":")[0] for key in runtimes["pods"].pod_logs]
    assert played == [task_id for _, task_id in factory.TRAINING_STEPS for _ in range(2 if task_id == "tune_trials"
                                                                                      else 1)]
    steps = [step for step, _ in factory.TRAINING_STEPS if step != "tune_trials"]
    pods, local = (outputs(runtimes[name], training[name], steps) for name in ("pods", "local"))
    for step in steps:
        assert pods[step] == local[step], step
    assert pods["ingest"]["data_version"] and pods["split"]["rows"]
    assert pods["register"]["promoted"] is True and pods["register"]["version"] == 1


def test_the_gpu_pool_pods_run_on_the_cpu_here_with_one_warning(runtimes, training):
    logs = runtimes["pods"].pod_logs
    assert logs["train_model:None"].count(CUDA_FALLBACK) == 1


@pytest.fixture(scope="module")
def scored_and_monitored(runtimes, training):
    """The scoring DAG, then the monitoring DAG, in both runtimes: ``{runtime: (scoring uri, monitoring uri)}``."""
    spec_path = runtimes["pods"].spec_path
    dags = (factory.scoring_dag(spec_path, "kubernetes"), factory.monitoring_dag(spec_path, "kubernetes"))
    return {name: (runtime.run_dag(dags[0], runs.SCORING), runtime.run_dag(dags[1], runs.MONITORING))
            for name, runtime in runtimes.items()}


def test_the_scoring_and_monitoring_pods_agree_with_the_local_runtime(runtimes, scored_and_monitored):
    assert {"score_batch:None", "monitor_drift:None"} <= set(runtimes["pods"].pod_logs)
    (pods_scoring, pods_monitoring), (local_scoring, local_monitoring) = scored_and_monitored.values()
    pods, local = runtimes["pods"], runtimes["local"]
    assert outputs(pods, pods_scoring, ["score"]) == outputs(local, local_scoring, ["score"])
    assert outputs(pods, pods_monitoring, ["monitor"]) == outputs(local, local_monitoring, ["monitor"])
    scored, local_scored = (predictions(*world).drop(columns="scored_at")
                            for world in ((pods, pods_scoring), (local, local_scoring)))
    assert len(scored) == len(pd.read_csv(DATA_PATH))
    pd.testing.assert_frame_equal(scored, local_scored)  # the same scores, to the bit


def test_a_step_that_refuses_its_input_in_its_pod_fails_its_task_without_retries(runtimes):
    pods = runtimes["pods"]
    with environment(pods.env):
        frame = pd.read_csv(DATA_PATH).drop(columns=["Class"])
        storage.write_bytes(f"s3://{BUCKET}/data/no_target.csv", frame.to_csv(index=False).encode())
        run_uri = factory.start_run(str(pods.spec_path), {"data_uri": f"s3://{BUCKET}/data/no_target.csv"},
                                    "manual__refused", runs.TRAINING)
    ingest = step_pods.step_operators(factory.training_dag(pods.spec_path, "kubernetes"), run_uri)[0]
    manifest = step_pods.pod_manifest(ingest)
    end = podman.play(manifest, pods.folder, [config_map(pods.settings)])
    assert end.exit_code == 2
    refusal = ingest.refusal(end.as_pod(manifest))
    assert isinstance(refusal, AirflowFailException)  # failed for good: Airflow does not retry it
    message = str(refusal)
    assert message.startswith("step ingest refused its input:\n") and "'Class'" in message, message
    with environment(pods.env), pytest.raises(runs.StepNotFinished):
        runs.Run(run_uri).result(Ingest)


def test_the_airflow_image_lists_every_dag_and_loads_the_plugin():
    script = ("airflow db migrate > /dev/null && airflow dags reserialize > /dev/null "  # the dag-processor's parse
              "&& airflow dags list-import-errors -o json 2>/dev/null && echo @@ "
              "&& airflow dags list -o json 2>/dev/null && echo @@ && airflow plugins -o json 2>/dev/null")
    done = podman.podman("run", "--rm", "--user", "50000:0", "--entrypoint", "sh",
                         "-e", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:////tmp/airflow.db",
                         "-e", "AIRFLOW__CORE__LOAD_EXAMPLES=False", AIRFLOW_IMAGE, "-c", script, timeout=600)
    errors, dags, plugins = (json.loads(part.strip().splitlines()[-1]) for part in done.stdout.split("@@"))
    assert errors == []
    expected = set(factory.pipeline_dags(SPEC_PATH.parent))
    assert {dag["dag_id"] for dag in dags} == expected
    assert "mlpipe_ui" in {plugin["name"] for plugin in plugins}


def test_both_task_images_pin_a_models_requirements_alike():
    """A model logged in the CPU image (xgboost-cpu installed) needs the same xgboost as one from the GPU image."""
    xgboost = next(line for line in (ROOT / "requirements.lock").read_text().splitlines()
                   if line.startswith("xgboost=="))
    script = "import json; from mlpipe.model.pyfunc import pip_requirements; print(json.dumps(pip_requirements()))"
    cpu, gpu = (json.loads(podman.podman("run", "--rm", "--entrypoint", "python", image, "-c", script)
                           .stdout.splitlines()[-1]) for image in images()[:2])
    assert cpu == gpu and xgboost in cpu
