"""The ``kubernetes`` runtime: each step is a KubernetesPodOperator pod on its node pool.

The pod runs the same command as every runtime, ``python -m mlpipe step <step> --run <uri>``,
from its pool's image (:mod:`mlpipe.compute.node_pools`), and the task hands back the
step's ``result.json`` from the artifact store as its XCom.

How this design keeps KubernetesPodOperator's known failure modes from hanging or leaking a run:

- **No XCom sidecar** (the sidecar that could wait forever for a result file, apache/airflow
  #22318): ``do_xcom_push`` is off; the step writes its result to the artifact store and the
  operator reads it there once the pod has succeeded.
- **No orphan pods** (deferrable pods left running when a task is killed, timed out or marked
  by hand, #37298 and #44014): every pod has ``activeDeadlineSeconds`` (the task's
  ``execution_timeout`` plus the startup timeout), so Kubernetes itself ends it however the
  operator or triggerer died; finished pods are deleted (``on_finish_action="delete_pod"``);
  a retry re-attaches to its own pod instead of starting a twin (``durable``, matched by the
  dag/task/run/try labels the operator sets).
- **Bounded waits**: ``startup_timeout_seconds`` (from the node-pools file) fails a pod that
  never starts (bad image, no node with a GPU); ``execution_timeout`` bounds the task.
- **User errors fail fast**: the step exits with status 2 when it refuses its input; the task
  then fails without retries, with the step's message (the container's termination message
  falls back to the end of its log).

Pods are locked down: a non-root user, read-only root filesystem with an ``emptyDir`` on
``/tmp``, no privilege escalation, all capabilities dropped, the runtime's default seccomp
profile; credentials come only from the Secrets named in the node-pools file (``envFrom``),
never from the DAG. A run triggered with ``force_cpu`` places every step on the CPU pool.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.common.compat.sdk import XCOM_RETURN_KEY
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from kubernetes.client import models as k8s

from mlpipe.compute import node_pools
from mlpipe.core.errors import EXIT_REFUSED
from mlpipe.core.spec import Spec
from mlpipe.orchestration.assets import record_step_event
from mlpipe.orchestration.links import STEP_LINKS
from mlpipe.orchestration.protocol import user_error
from mlpipe.store.runs import Run

CONTAINER = "base"
DEFAULT_TIMEOUT = timedelta(hours=2)


def _label(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63].strip("-_.")


def terminated(pod: k8s.V1Pod | None, container: str = CONTAINER) -> k8s.V1ContainerStateTerminated | None:
    """The terminated state (exit code, message) of ``container`` in ``pod``, once it has ended."""
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    status = next((s for s in statuses if s.name == container), None)
    return status.state.terminated if status and status.state else None


class KubernetesStepOperator(KubernetesPodOperator):
    """Run one mlpipe step in a pod on its node pool and return its result as XCom."""

    template_fields = (*KubernetesPodOperator.template_fields, "run_uri")
    ui_color = "#e6f0ff"
    operator_extra_links = STEP_LINKS  # read off the result this operator pushes as its return value

    def __init__(self, *, step: str, run_uri: str, pipeline: str, placement: dict[str, Any],
                 cpu_placement: dict[str, Any], shard: int | None = None, **kwargs: Any) -> None:
        task_pods = node_pools.load()
        arguments = ["step", step, "--run", run_uri, *([] if shard is None else ["--shard", str(shard)])]
        super().__init__(
            name=_label(f"{pipeline}-{step}".replace("_", "-")).lower(),
            namespace=task_pods.namespace,
            service_account_name=task_pods.service_account,
            cmds=["python", "-m", "mlpipe"],
            arguments=arguments,
            env_from=node_pools.env_from(task_pods),
            labels={"app.kubernetes.io/name": "mlpipe-step", "app.kubernetes.io/part-of": "mlpipe",
                    "mlpipe.io/pipeline": _label(pipeline), "mlpipe.io/step": _label(step)},
            security_context=node_pools.POD_SECURITY,
            container_security_context=node_pools.CONTAINER_SECURITY,
            volumes=[k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource())],
            volume_mounts=[k8s.V1VolumeMount(name="tmp", mount_path=node_pools.TMP)],
            base_container_name=CONTAINER,
            startup_timeout_seconds=task_pods.startup_timeout_seconds,
            on_finish_action="delete_pod",
            termination_message_policy="FallbackToLogsOnError",
            do_xcom_push=False,
            get_logs=True,
            deferrable=kwargs.pop("deferrable", True),
            **kwargs,
        )
        self.step, self.run_uri, self.shard = step, run_uri, shard
        self.placement, self.cpu_placement = placement, cpu_placement
        self.place(node_pools.Placement.model_validate(placement))
        timeout = self.execution_timeout or DEFAULT_TIMEOUT
        self.active_deadline_seconds = int(timeout.total_seconds()) + task_pods.startup_timeout_seconds

    @classmethod
    def step_kwargs(cls, pipeline: Spec, step: str) -> dict[str, Any]:
        """The operator arguments that place ``step`` of ``pipeline`` (its pool, and the CPU fallback)."""
        task_pods = node_pools.load()
        return {"pipeline": pipeline.name,
                "placement": node_pools.placement(task_pods, pipeline, step).model_dump(mode="json"),
                "cpu_placement": node_pools.placement(task_pods, pipeline, step,
                                                      force_cpu=True).model_dump(mode="json")}

    def place(self, placement: node_pools.Placement) -> None:
        """Put the pod on ``placement``'s pool: image, scheduling, resources, the pool's env."""
        pool = placement.pool
        self.pool_name = placement.pool_name
        self.image = pool.image
        self.node_selector = dict(pool.node_selector)
        self.tolerations = [k8s.V1Toleration(**toleration) for toleration in pool.tolerations]
        self.container_resources = k8s.V1ResourceRequirements(**node_pools.quantities(placement.resources))
        self.env_vars = node_pools.pod_env(pool)
        self.labels = {**self.labels, "mlpipe.io/pool": _label(placement.pool_name)}

    def apply_trigger_options(self, context: Any) -> None:
        """``force_cpu``: move the pod to the CPU pool (its image, nodes, resources and device)."""
        if context["params"].get("force_cpu") and self.pool_name != self.cpu_placement["pool_name"]:
            self.log.info("force_cpu: running on pool %s instead of %s", self.cpu_placement["pool_name"],
                          self.pool_name)
            self.place(node_pools.Placement.model_validate(self.cpu_placement))

    def execute(self, context: Any) -> dict[str, Any] | None:
        self.apply_trigger_options(context)
        super().execute(context)  # a deferrable run defers here and comes back in trigger_reentry
        return self.publish_result(context)

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        super().trigger_reentry(context, event)
        return self.publish_result(context)

    def publish_result(self, context: Any) -> dict[str, Any]:
        """The step's result from the artifact store, pushed as this task's XCom (no sidecar) and attached to its
        outlet's asset event."""
        result = Run(self.run_uri).result(self.step, self.shard)
        context["ti"].xcom_push(key=XCOM_RETURN_KEY, value=result)
        record_step_event(context, self.step, result)
        return result

    def refusal(self, pod: k8s.V1Pod | None) -> AirflowFailException | None:
        """The task's final failure when ``pod``'s step refused its input (exit status 2), else ``None``."""
        ended = terminated(pod)
        if ended is None or ended.exit_code != EXIT_REFUSED:
            return None
        return AirflowFailException(f"step {self.step} refused its input:\n"
                                    f"{user_error((ended.message or '').splitlines())}")

    def cleanup(self, pod: k8s.V1Pod, remote_pod: k8s.V1Pod, *args: Any, **kwargs: Any) -> None:
        """KubernetesPodOperator's cleanup (the pod is deleted); a step's user error fails the task for good."""
        try:
            super().cleanup(pod, remote_pod, *args, **kwargs)
        except AirflowException as error:
            if refusal := self.refusal(remote_pod):
                raise refusal from error
            raise
