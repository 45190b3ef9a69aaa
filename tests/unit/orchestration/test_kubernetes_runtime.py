"""The kubernetes runtime: the pod every task of every DAG would create, in both node pools.

Each pod is built by KubernetesPodOperator itself (``build_pod_request_obj``, no cluster needed),
serialized as the API server would receive it, and validated against the Kubernetes schemas.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from airflow.sdk.exceptions import AirflowFailException
from kubernetes.client import models as k8s

from mlpipe.compute import node_pools
from mlpipe.core import settings, spec
from mlpipe.orchestration import factory
from mlpipe.orchestration.kubernetes import KubernetesStepOperator
from tests import step_pods
from tests.conftest import SPEC_PATH
from tests.planted_secrets import SECRETS, hits

K8S_VERSION = "1.31"
RUN_URI = "s3://mlpipe/store/loan_default/runs/manual__2026-11-23"
STEP_TASKS = {task_id: step for step, task_id in (*factory.TRAINING_STEPS, *factory.SCORING_STEPS)}


@pytest.fixture(autouse=True)
def bundled_pools(monkeypatch):
    monkeypatch.delenv(settings.NODE_POOLS, raising=False)


def spec_file(tmp_path: Path, **kubernetes) -> Path:
    """A copy of the bundled spec (data path made absolute) with its ``kubernetes:`` section replaced."""
    document = yaml.safe_load(SPEC_PATH.read_text())
    document["data"]["source"] = str(SPEC_PATH.parent / document["data"]["source"])
    document["validation"]["profile"] = str(SPEC_PATH.parent / document["validation"]["profile"])
    document["scoring"]["source"] = document["data"]["source"]
    document["kubernetes"] = kubernetes
    path = tmp_path / "loan_default.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def step_operators(spec_path: Path) -> list[KubernetesStepOperator]:
    """Every step task of the training and scoring DAGs, as the kubernetes runtime builds it (mapped: shard 0)."""
    dags = (factory.training_dag(spec_path, "kubernetes"), factory.scoring_dag(spec_path, "kubernetes"))
    return [op for dag in dags for op in step_pods.step_operators(dag, RUN_URI) if op.shard in (None, 0)]


context, pod_manifest = step_pods.context, step_pods.pod_manifest


def test_every_task_of_every_dag_is_a_step_pod(tmp_path):
    operators = step_operators(spec_file(tmp_path))
    assert {op.task_id for op in operators} == set(STEP_TASKS)
    assert all(isinstance(op, KubernetesStepOperator) for op in operators)


@pytest.mark.parametrize("pool", ["cpu", "gpu"])
def test_pods_are_schema_valid_and_locked_down(tmp_path, pool):
    pools = node_pools.load()
    for operator in step_operators(spec_file(tmp_path, default_pool=pool)):
        manifest = pod_manifest(operator)
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
        pod, [container] = manifest["spec"], manifest["spec"]["containers"]
        expected = pools.pools[pool]
        step = STEP_TASKS[operator.task_id]
        assert container["image"] == expected.image
        assert container["command"] == ["python", "-m", "mlpipe"]
        assert container["args"][:4] == ["step", step, "--run", RUN_URI]
        assert (container["args"][4:] == ["--shard", "0"]) == (step == "tune_trials")
        assert pod["nodeSelector"] == expected.node_selector
        assert pod.get("tolerations", []) == expected.tolerations
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        assert gpus == ("1" if pool == "gpu" else None)
        assert {"name": "MLPIPE_DEVICE", "value": "cuda" if pool == "gpu" else "cpu"} in container["env"]
        assert {"secretRef": {"name": "mlpipe-task-credentials"}} in container["envFrom"]
        assert not any("AWS_SECRET" in e["name"] or "PASSWORD" in e["name"] for e in container["env"])
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "privileged": False,
                                                 "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
        assert pod["serviceAccountName"] == pools.service_account
        assert manifest["metadata"]["namespace"] == pools.namespace
        labels = manifest["metadata"]["labels"]
        assert labels["mlpipe.io/pipeline"] == "loan_default" and labels["mlpipe.io/step"] == step
        assert labels["run_id"] and labels["mlpipe.io/pool"] == pool
        assert pod["restartPolicy"] == "Never" and pod["activeDeadlineSeconds"] > 7200
        assert operator.on_finish_action.value == "delete_pod" and operator.deferrable
        assert not operator.do_xcom_push  # no sidecar: results come from the artifact store


def test_no_secret_of_the_scheduler_reaches_a_pod_spec(tmp_path, monkeypatch):
    for name, value in SECRETS.items():  # as the scheduler/worker environment would hold them
        monkeypatch.setenv(name, value)
    manifests = {f"{pool}/{operator.task_id}": yaml.safe_dump(pod_manifest(operator))
                 for pool in ("cpu", "gpu") for operator in step_operators(spec_file(tmp_path, default_pool=pool))}
    assert len(manifests) == 2 * len(STEP_TASKS)
    assert hits(SECRETS.values(), **manifests) == []
    assert all("secretRef" in manifest for manifest in manifests.values())  # credentials: by Secret name only


def test_the_spec_places_steps_and_adds_resources(tmp_path):
    path = spec_file(tmp_path, default_pool="cpu",
                     steps={"train": {"pool": "gpu", "resources": {"limits": {"memory": "24Gi"}}}})
    pods = {op.task_id: pod_manifest(op)["spec"] for op in step_operators(path)}
    train = pods["train_model"]["containers"][0]["resources"]
    assert train["limits"] == {"cpu": "4", "memory": "24Gi", "nvidia.com/gpu": "1"}
    assert pods["train_model"]["nodeSelector"] == {"mlpipe.io/pool": "gpu"}
    assert pods["analyze_model"]["nodeSelector"] == {"mlpipe.io/pool": "cpu"}


def test_the_shipped_spec_trains_and_tunes_on_the_gpu_pool(tmp_path):
    operators = {op.task_id: op for op in step_operators(SPEC_PATH)}
    assert {task for task, op in operators.items() if op.pool_name == "gpu"} == {"train_model", "tune_trials"}
    assert operators["ingest_data"].container_resources.limits["memory"] == "6Gi"


def test_changing_a_pool_in_the_node_pools_file_changes_the_pods(tmp_path, monkeypatch):
    document = yaml.safe_load(node_pools.DEFAULT_FILE.read_text())
    document["pools"]["gpu"].update(image="registry.example/task-gpu:2", node_selector={"gpu-type": "h100"})
    document["namespace"] = "ml-jobs"
    pools_path = tmp_path / "pools.yaml"
    pools_path.write_text(yaml.safe_dump(document))
    monkeypatch.setenv(settings.NODE_POOLS, str(pools_path))
    manifest = pod_manifest(next(op for op in step_operators(SPEC_PATH) if op.task_id == "train_model"))
    assert manifest["spec"]["containers"][0]["image"] == "registry.example/task-gpu:2"
    assert manifest["spec"]["nodeSelector"] == {"gpu-type": "h100"}
    assert manifest["metadata"]["namespace"] == "ml-jobs"


def test_force_cpu_moves_a_gpu_step_to_the_cpu_pool(tmp_path):
    train = next(op for op in step_operators(SPEC_PATH) if op.task_id == "train_model")
    train.apply_trigger_options(context(train, force_cpu=True))
    manifest = pod_manifest(train)
    assert manifest["spec"]["nodeSelector"] == {"mlpipe.io/pool": "cpu"}
    assert "nvidia.com/gpu" not in manifest["spec"]["containers"][0]["resources"]["limits"]
    assert {"name": "MLPIPE_DEVICE", "value": "cpu"} in manifest["spec"]["containers"][0]["env"]


@pytest.mark.parametrize(("kubernetes", "field"), [
    ({"steps": {"trian": {"pool": "gpu"}}}, "kubernetes.steps.trian: not a step"),
    ({"steps": {"train": {"pool": "tpu"}}}, "kubernetes.steps.train.pool: 'tpu' is not a node pool"),
    ({"default_pool": "big"}, "kubernetes.default_pool: 'big' is not a node pool"),
])
def test_a_bad_placement_names_the_spec_field(tmp_path, kubernetes, field):
    with pytest.raises(spec.SpecError, match=field):
        factory.training_dag(spec_file(tmp_path, **kubernetes), "kubernetes")


def test_a_bad_node_pools_file_names_the_field(tmp_path, monkeypatch):
    document = yaml.safe_load(node_pools.DEFAULT_FILE.read_text())
    del document["pools"]["cpu"]["image"]
    pools_path = tmp_path / "pools.yaml"
    pools_path.write_text(yaml.safe_dump(document))
    monkeypatch.setenv(settings.NODE_POOLS, str(pools_path))
    with pytest.raises(ValueError, match=r"pools\.cpu\.image: Field required"):
        node_pools.load()


def terminated_pod(exit_code: int, message: str) -> k8s.V1Pod:
    state = k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code, message=message))
    status = k8s.V1PodStatus(phase="Failed", container_statuses=[k8s.V1ContainerStatus(
        name="base", state=state, image="task", image_id="", ready=False, restart_count=0)])
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="p", namespace="mlpipe-tasks"), status=status)


def test_a_step_that_refuses_its_input_fails_the_task_without_retries():
    operator = next(op for op in step_operators(SPEC_PATH) if op.task_id == "validate_data")
    log = "loading\nmlpipe step: error: column 'int_rate': expected float, found str\n"
    refusal = operator.refusal(terminated_pod(2, log))
    assert isinstance(refusal, AirflowFailException)
    assert str(refusal) == "step validate refused its input:\ncolumn 'int_rate': expected float, found str"
    assert operator.refusal(terminated_pod(137, "Killed")) is None  # an infrastructure failure is retried
    assert operator.refusal(None) is None
