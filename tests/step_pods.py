"""The pods the kubernetes runtime creates: every step task of a DAG, built by KubernetesPodOperator itself.

``build_pod_request_obj`` is the operator's own code path (image, command, env, envFrom, securityContext,
volumes, resources, labels); no cluster is needed to call it. Shared by the pod-spec tests
(tests/unit/orchestration/test_kubernetes_runtime.py) and the tests that play the pods with podman (tests/containers/).
"""

from __future__ import annotations

from types import SimpleNamespace

from airflow.sdk import DAG
from kubernetes.client import ApiClient

from mlpipe.orchestration.kubernetes import KubernetesStepOperator

RUN_ID = "manual__2026-11-23T10:00:00+00:00"


def step_operators(dag: DAG, run_uri: str) -> list[KubernetesStepOperator]:
    """The step tasks of ``dag`` in run order, reading the run at ``run_uri``; a mapped task once per shard."""
    operators = []
    for task in dag.tasks:
        if type(task).__name__ == "MappedOperator":
            unmapped = [task.unmap({"shard": shard}) for shard in task.expand_input.value["shard"]]
        elif hasattr(task, "step"):
            unmapped = [task]
        else:
            continue  # start_run and the Python tasks after a step
        for operator in unmapped:
            operator.arguments = [a if isinstance(a, str) else run_uri for a in operator.arguments]
            operator.run_uri = run_uri
            operators.append(operator)
    return operators


def context(operator: KubernetesStepOperator, run_id: str = RUN_ID, **params) -> dict:
    """The part of a task's context that building its pod reads."""
    shard = operator.shard if operator.shard is not None else -1
    ti = SimpleNamespace(dag_id=operator.dag_id, task_id=operator.task_id, map_index=shard, try_number=1)
    return {"ti": ti, "run_id": run_id, "dag": operator.dag, "params": params}


def pod_manifest(operator: KubernetesStepOperator, run_id: str = RUN_ID) -> dict:
    """The pod of ``operator`` as the API server would receive it."""
    pod = operator.build_pod_request_obj(context(operator, run_id), dry_run=True)
    return ApiClient().sanitize_for_serialization(pod)
