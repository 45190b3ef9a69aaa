"""The training DAG on a real Celery deployment, started natively: no Docker, nothing mocked.

The module starts real servers (:mod:`tests.services`): Postgres (Airflow's metadata
database, the Celery result backend, MLflow's backend store and the Optuna storage,
one database each), Redis (the Celery broker), an S3 endpoint process (moto's server:
the artifact store ``MLPIPE_STORE`` and MLflow's artifacts), the MLflow tracking server,
and Airflow's api-server, scheduler, dag-processor and a Celery worker with
``CeleryExecutor``. Steps run with the ``local`` runtime: subprocesses of the worker.

- The DAG runs once under ``airflow dags test`` (the baseline: same services, no
  executor), then is triggered through the public REST API and must succeed on the
  Celery worker; the model version and the run's artifacts must be in MLflow and S3.
  The test prints the trigger→success time against the ``dags test`` run's.
- A second triggered run loses its Celery worker (SIGKILL of the whole process tree,
  the step's subprocess included) in the middle of ``train_model``; a new worker is
  started, the scheduler notices the missing heartbeats and retries the task, the run
  succeeds, and the registry holds exactly one version for it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import psutil
import pytest

from mlpipe.registry.tracking import RUN_URI_TAG
from mlpipe.store import runs
from tests import services
from tests.conftest import DATA_PATH

pytestmark = [pytest.mark.celery, pytest.mark.integration]
DAG_ID, PIPELINE, MODEL = "loan_default_training", "loan_default", "loan_default"
KILLED_TASK, KILLED_STEP = "train_model", "train"
RUN_TIMEOUT = 600
TRIALS = 4  # a small tuning budget: the mapped trial tasks run on the Celery workers, briefly
AWS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


class Stack:
    """The running deployment: Airflow (REST API, processes), the MLflow server and the S3 bucket."""

    def __init__(self, airflow: services.Airflow, mlflow: services.MlflowServer, s3, bucket: str,
                 folder: Path) -> None:
        self.airflow, self.mlflow, self.s3, self.bucket, self.folder = airflow, mlflow, s3, bucket, folder
        self.store = f"s3://{bucket}/store"
        self.timings: dict[str, float] = {}

    def keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix`` in the bucket."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def read_json(self, key: str) -> dict:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def run_prefix(self, run_id: str) -> str:
        """The key prefix of a DAG run's folder in the artifact store."""
        return runs.run_uri(PIPELINE, run_id, self.store).removeprefix(f"s3://{self.bucket}/") + "/"

    def mlflow_client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.mlflow.url, registry_uri=self.mlflow.url)

    def versions_of(self, run_id: str) -> list:
        """The registered versions of the model whose lineage tag names this DAG run's folder."""
        uri = runs.run_uri(PIPELINE, run_id, self.store)
        return [v for v in self.mlflow_client().search_model_versions(f"name='{MODEL}'")
                if v.tags.get(RUN_URI_TAG) == uri]

    def conf(self, notes: str, **options) -> dict:
        """Trigger options: the training data from S3, notes saying which run this is, and ``options``."""
        return {"data_uri": f"s3://{self.bucket}/data/lending_club.csv", "notes": notes, **options}

    def trigger(self, conf: dict) -> tuple[str, float]:
        """Trigger the DAG through the REST API; returns the run id and when (monotonic) it was triggered."""
        started = time.monotonic()
        run = self.airflow.api("POST", f"dags/{DAG_ID}/dagRuns",
                               json={"logical_date": datetime.now(UTC).isoformat(), "conf": conf})
        return run["dag_run_id"], started

    def task(self, run_id: str, task_id: str) -> dict:
        return self.airflow.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}")

    def wait_for_run(self, run_id: str, timeout: float = RUN_TIMEOUT) -> float:
        """Poll the run until it succeeds (returns when, monotonic); fail with task states and logs otherwise."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.airflow.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}")["state"]
            if state == "success":
                return time.monotonic()
            if state == "failed":
                break
            time.sleep(1)
        pytest.fail(f"DAG run {run_id} is {state!r} (after up to {timeout:.0f} s)\n{self.diagnosis(run_id)}")

    def diagnosis(self, run_id: str) -> str:
        """Task states, the failed tasks' log tails and every process's log tail."""
        try:
            tasks = self.airflow.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
            states = "\n".join(f"  {t['task_id']}[{t.get('map_index')}] {t['state']} try {t['try_number']}"
                               for t in tasks)
        except services.ServiceError as error:
            states = f"  (no task states: {error})"
        logs = []
        for path in sorted((self.airflow.home / "logs").glob(f"dag_id={DAG_ID}/run_id={run_id}/task_id=*/*.log")):
            text = path.read_text(errors="replace").splitlines()
            if any('"failed"' in line or "error" in line.lower() for line in text[-50:]):
                logs.append(f"--- {path}:\n" + "\n".join(text[-40:]))
        return f"tasks:\n{states}\n" + "\n".join(logs) + "\n" + self.airflow.log_tails()


@pytest.fixture(scope="module")
def stack(postgres_server, s3_endpoint, tmp_path_factory):
    """The whole deployment, started once for this module and stopped (every process) at its end."""
    folder = tmp_path_factory.mktemp("celery")
    aws = {**AWS, "AWS_ENDPOINT_URL": s3_endpoint}
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **{k.lower(): v for k, v in AWS.items()
                                                          if k != "AWS_DEFAULT_REGION"},
                      region_name=AWS["AWS_DEFAULT_REGION"])
    bucket = f"celery-{int(time.time())}"
    s3.create_bucket(Bucket=bucket)
    started: list = []
    try:
        redis = services.start_redis(folder / "redis")
        started.append(redis)
        mlflow = services.start_mlflow(  # migrates its database while Airflow migrates its own
            postgres_server.create_database("mlflow"), f"s3://{bucket}/mlflow", folder / "mlflow",
            env=services.clean_env(**aws, MLFLOW_S3_ENDPOINT_URL=s3_endpoint), wait=False)
        started.append(mlflow)
        airflow = services.airflow_celery(
            folder / "airflow", postgres_server.create_database("airflow"), redis.url,
            "db+" + postgres_server.url("airflow"), **aws,
            MLPIPE_STORE=f"s3://{bucket}/store", MLFLOW_TRACKING_URI=mlflow.url, MLPIPE_RUNTIME="local",
            MLPIPE_OPTUNA_STORAGE=postgres_server.create_database("optuna"),
            MLPIPE_PII_KEY="test-key-not-a-secret")
        started.append(airflow)
        airflow.start(before_processes=mlflow.wait)
        stack = Stack(airflow, mlflow, s3, bucket, folder)
        deadline = time.monotonic() + 180
        while True:  # the dag-processor has parsed the DAG file
            try:
                airflow.api("GET", f"dags/{DAG_ID}")
                break
            except services.ServiceError as error:
                if time.monotonic() > deadline:
                    raise services.ServiceError(f"{DAG_ID} never appeared in the API\n{airflow.log_tails()}") from error
                time.sleep(2)
        s3.upload_file(str(DATA_PATH), bucket, "data/lending_club.csv")
        yield stack
    finally:
        for service in reversed(started):
            service.stop()


def test_triggered_run_succeeds_on_celery_and_lands_in_mlflow_and_s3(stack):
    # Baseline: the same DAG, services and options under `airflow dags test` (no executor, no workers).
    # The DAG is still paused, so the scheduler leaves this run alone.
    started = time.monotonic()
    options = json.dumps(stack.conf("dags test baseline", tuning_trials=TRIALS))
    stack.airflow.airflow("dags", "test", DAG_ID, "-c", options, timeout=RUN_TIMEOUT)
    dags_test_wall = time.monotonic() - started
    baseline = max(stack.airflow.api("GET", f"dags/{DAG_ID}/dagRuns")["dag_runs"], key=lambda r: r["end_date"])
    assert baseline["state"] == "success"
    dags_test_run = (datetime.fromisoformat(baseline["end_date"])
                     - datetime.fromisoformat(baseline["start_date"])).total_seconds()

    stack.airflow.api("PATCH", f"dags/{DAG_ID}", json={"is_paused": False})
    run_id, triggered = stack.trigger(stack.conf("celery run", tuning_trials=TRIALS))
    celery_seconds = stack.wait_for_run(run_id) - triggered

    tasks = stack.airflow.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    published = [t["state"] for t in tasks if t["task_id"] == "publish_champion"]
    assert {t["state"] for t in tasks if t["task_id"] != "publish_champion"} == {"success"}
    assert all(t["hostname"] for t in tasks)  # run by the Celery worker
    prefix = stack.run_prefix(run_id)
    keys = set(stack.keys(prefix))
    for expected in ("spec.json", "ingest/snapshot/part-00000.parquet", "train/result.json", "analyze/metrics.json",
                     "register/result.json"):
        assert prefix + expected in keys, f"{expected} is not in s3://{stack.bucket}/{prefix}"
    assert any(key.startswith(prefix + "train/model/") for key in keys)

    versions = stack.versions_of(run_id)
    assert len(versions) == 1, versions
    version = versions[0]
    registered = stack.read_json(prefix + "register/result.json")
    assert published == ["success" if registered["promoted"] else "skipped"]  # the champion event: promotions only
    trained = stack.read_json(prefix + "train/result.json")
    assert int(version.version) == registered["version"]
    assert version.run_id == trained["mlflow_run_id"]
    assert version.tags["mlflow.note.content"] == "celery run"
    assert trained["data_version"] == version.tags["mlpipe.data_version"]
    # The model's files are in S3, under the MLflow server's artifact destination.
    client = stack.mlflow_client()
    mlflow_run = client.get_run(version.run_id)
    assert mlflow_run.data.tags[RUN_URI_TAG] == runs.run_uri(PIPELINE, run_id, stack.store)
    model_ids = {version.model_id} | {output.model_id for output in mlflow_run.outputs.model_outputs}
    locations = [client.get_logged_model(model_id).artifact_location for model_id in model_ids if model_id]
    assert locations, f"no logged model for version {version.version} (source {version.source})"
    for location in locations:
        assert location.startswith("mlflow-artifacts:/"), location
        model_prefix = "mlflow/" + location.removeprefix("mlflow-artifacts:/").strip("/") + "/"
        assert model_prefix + "MLmodel" in stack.keys(model_prefix), f"no s3://{stack.bucket}/{model_prefix}MLmodel"

    ratio = celery_seconds / dags_test_run
    stack.timings.update(celery_trigger_to_success_s=celery_seconds, dags_test_run_s=dags_test_run,
                         dags_test_wall_s=dags_test_wall, overhead_ratio=ratio)
    print(f"\ncelery trigger→success {celery_seconds:.1f} s vs dags test {dags_test_run:.1f} s "
          f"(its CLI wall {dags_test_wall:.1f} s) = ratio {ratio:.2f}")
    (stack.folder / "timings.json").write_text(json.dumps(stack.timings, indent=2))


def step_process(worker: services.Service, step: str) -> psutil.Process | None:
    """The worker's subprocess running ``python -m mlpipe step <step>``, if it runs now."""
    for proc in worker.tree():
        try:
            command = proc.cmdline()
        except psutil.Error:
            continue
        if "mlpipe" in command and command[command.index("mlpipe") + 1:][:2] == ["step", step]:
            return proc
    return None


def test_killed_worker_mid_step_is_retried_on_a_new_worker_without_duplicates(stack):
    stack.airflow.api("PATCH", f"dags/{DAG_ID}", json={"is_paused": False})
    versions_before = len(stack.mlflow_client().search_model_versions(f"name='{MODEL}'"))
    run_id, triggered = stack.trigger(stack.conf("worker killed", skip_tuning=True))
    prefix = stack.run_prefix(run_id)

    # Wait until train_model's step subprocess has run a few seconds, then crash the worker.
    worker = stack.airflow.worker
    deadline = time.monotonic() + RUN_TIMEOUT
    step = None
    while time.monotonic() < deadline:
        step = step_process(worker, KILLED_STEP)
        if step is not None and time.time() - step.create_time() >= 3:
            break
        if stack.airflow.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}")["state"] in ("success", "failed"):
            break
        time.sleep(0.2)
    assert step is not None, f"{KILLED_TASK} never ran\n{stack.diagnosis(run_id)}"
    assert stack.task(run_id, KILLED_TASK)["state"] == "running"
    assert not stack.keys(prefix + "train/result.json"), "train finished before the worker could be killed"
    killed_at = time.monotonic()
    victims = worker.kill()
    assert step.pid in {p.pid for p in victims}
    assert not [p for p in victims if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    stack.airflow.start_worker()
    succeeded = stack.wait_for_run(run_id)
    task = stack.task(run_id, KILLED_TASK)
    assert task["state"] == "success" and task["try_number"] >= 2, task
    tries = stack.airflow.api("GET", f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{KILLED_TASK}/tries")
    first = next(t for t in tries["task_instances"] if t["try_number"] == 1)
    assert first["state"] in ("failed", "up_for_retry"), first

    # Nothing duplicated: one version for this run, from the retried (finished) train's MLflow run.
    versions = stack.versions_of(run_id)
    assert len(versions) == 1, versions
    trained = stack.read_json(prefix + "train/result.json")
    assert versions[0].run_id == trained["mlflow_run_id"]
    assert len(stack.mlflow_client().search_model_versions(f"name='{MODEL}'")) == versions_before + 1

    timings = {"kill_run_trigger_to_success_s": succeeded - triggered, "kill_to_success_s": succeeded - killed_at,
               "killed_task_try_number": task["try_number"]}
    stack.timings.update(timings)
    print(f"\nworker killed {killed_at - triggered:.1f} s after the trigger, mid {KILLED_TASK} "
          f"(step pid {step.pid}); run succeeded {succeeded - killed_at:.1f} s later, "
          f"{KILLED_TASK} try {task['try_number']}; trigger→success {succeeded - triggered:.1f} s")
    (stack.folder / "timings.json").write_text(json.dumps(stack.timings, indent=2))
