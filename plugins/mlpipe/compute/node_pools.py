"""Node pools: where the ``kubernetes`` runtime puts each step's pod.

Two pieces of configuration, no code: the node-pools file (``$MLPIPE_NODE_POOLS``, by default
``node_pools.yaml`` beside this module; the Helm chart renders one from its values) says what
each pool is (image, nodeSelector, tolerations, default resources, env) and how every step pod
reaches its credentials; the pipeline spec's ``kubernetes:`` section says which pool each step
uses and what resources it needs on top of the pool's defaults. :func:`placement` combines them.
Import-light (pydantic + yaml): the DAG side uses it at parse time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlpipe.core import settings
from mlpipe.core.names import Step
from mlpipe.core.spec import PodResources, Spec, SpecError

DEFAULT_FILE = Path(__file__).with_name("node_pools.yaml")

# What every mlpipe pod (a step, a Dask scheduler or worker) runs with, as the Kubernetes API spells it.
UID = 10001  # the task images' non-root user (images/task*/Dockerfile)
TMP = "/tmp"  # noqa: S108 - an emptyDir volume: the only writable path of a pod (read-only root filesystem)
POD_SECURITY = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
                      "capabilities": {"drop": ["ALL"]}}


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodePool(_Config):
    image: str
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    resources: PodResources = PodResources()
    env: dict[str, str] = Field({}, description="Set in every pod of the pool (e.g. MLPIPE_DEVICE=cuda).")


class EnvSource(_Config):
    """A Secret or a ConfigMap whose keys become env vars of every step pod."""

    secret: str | None = None
    config_map: str | None = None

    @model_validator(mode="after")
    def _one(self) -> EnvSource:
        if (self.secret is None) == (self.config_map is None):
            raise ValueError("give exactly one of secret, config_map")
        return self


class TaskPods(_Config):
    """The node-pools file: the pools, and what every step pod shares."""

    namespace: str = "mlpipe-tasks"
    service_account: str = "mlpipe-task"
    env_from: list[EnvSource] = []
    startup_timeout_seconds: Annotated[int, Field(gt=0)] = 600
    cpu_pool: str = Field("cpu", description="The pool every step uses when a run is triggered with force_cpu.")
    pools: dict[str, NodePool]

    @model_validator(mode="after")
    def _cpu_pool_exists(self) -> TaskPods:
        if self.cpu_pool not in self.pools:
            raise ValueError(f"cpu_pool {self.cpu_pool!r} is not one of the pools: {', '.join(self.pools)}")
        return self


class Placement(_Config):
    """One step's pod: its pool, the pool's settings, and the resources it asks for."""

    pool_name: str
    pool: NodePool
    resources: PodResources


def pod_env(pool: NodePool) -> dict[str, str]:
    """The env of a pod of ``pool``: caches and temporary files under /tmp, then the pool's own env."""
    return {"HOME": TMP, "TMPDIR": TMP, "MPLCONFIGDIR": f"{TMP}/matplotlib", **pool.env}


def env_from(task_pods: TaskPods) -> list[dict[str, Any]]:
    """The ``envFrom`` of every pod: the Secrets and ConfigMaps of the node-pools file."""
    return [{"secretRef": {"name": source.secret}} if source.secret else {"configMapRef": {"name": source.config_map}}
            for source in task_pods.env_from]


def quantities(resources: PodResources) -> dict[str, dict[str, str]]:
    """``requests``/``limits`` with quantities as text (``"2"``, ``"4Gi"``), the empty ones left out."""
    return {kind: {key: str(value) for key, value in values.items()}
            for kind, values in resources.model_dump().items() if values}


def pools_file() -> Path:
    return settings.node_pools() or DEFAULT_FILE


def load(path: Path | None = None) -> TaskPods:
    """The node-pools file at ``path`` (default: ``$MLPIPE_NODE_POOLS`` or the bundled file), validated."""
    path = path or pools_file()
    try:
        return TaskPods.model_validate(yaml.safe_load(path.read_text()))
    except OSError as error:
        raise ValueError(f"node pools file {path}: cannot be read ({error.strerror}); "
                         f"set ${settings.NODE_POOLS}") from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in error.errors())
        raise ValueError(f"node pools file {path}: {problems}") from None


def placement(task_pods: TaskPods, pipeline: Spec, step: str, *, force_cpu: bool = False) -> Placement:
    """Where ``step`` of ``pipeline`` runs: the spec's pool for it (or the CPU pool when forced)."""
    check(task_pods, pipeline)
    chosen = pipeline.kubernetes.steps.get(step)
    name = task_pods.cpu_pool if force_cpu else (chosen and chosen.pool) or pipeline.kubernetes.default_pool
    pool = task_pods.pools[name]
    resources = chosen.resources.over(pool.resources) if chosen else pool.resources
    return Placement(pool_name=name, pool=pool, resources=resources)


def check(task_pods: TaskPods, pipeline: Spec) -> None:
    """Fail with the spec field named when its ``kubernetes:`` section names an unknown step or pool."""
    section = pipeline.kubernetes
    problems = [f"kubernetes.steps.{step}: not a step; steps are: {', '.join(Step)}"
                for step in section.steps if step not in list(Step)]
    wanted = {"kubernetes.default_pool": section.default_pool,
              **{f"kubernetes.steps.{step}.pool": p.pool for step, p in section.steps.items() if p.pool}}
    problems += [f"{field}: {pool!r} is not a node pool; pools are: {', '.join(task_pods.pools)}"
                 for field, pool in wanted.items() if pool not in task_pods.pools]
    if problems:
        raise SpecError(f"spec {pipeline.name!r} (node pools from {pools_file()}):\n  " + "\n  ".join(problems))
