"""Distributed training: XGBoost on a Dask cluster (``xgboost.dask``), each worker reading its own shards.

The training and validation sets are lists of Parquet shards (URIs of the artifact store, ``file://``
or ``s3://``). Each shard becomes one partition of a Dask DataFrame, read and encoded *on the worker*
that holds it (the ShardedByS3Key idea: no data passes through the client), with the same encoding as
single-node training (:func:`mlpipe.data.features.matrix` with the training categories), so the booster
that comes back is a plain :class:`xgboost.Booster` that :class:`~mlpipe.model.tabular.TabularModel`, the
analysis and the model server use as they use any other.

Clusters:

- :func:`local_cluster`: a ``LocalCluster`` of worker processes on this machine (one thread each);
- :func:`cluster_spec`: the ``DaskCluster`` resource of the Dask Kubernetes operator
  (``dask_kubernetes.operator``) for a run: scheduler and workers from the task image, the workers
  on the train step's node pool (nodeSelector, tolerations, resources, env), the scheduler on the
  CPU pool; :func:`kube_cluster` creates it and connects;
- :func:`dask_client`: picks one of them, or connects to a running scheduler by address.

:func:`fit_distributed` is what the train step calls: the splits' parts as shards, cluster, training.

Import-light: dask, distributed and xgboost are imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mlpipe.compute import node_pools
from mlpipe.compute.node_pools import TMP
from mlpipe.core import uris
from mlpipe.core.spec import PodResources
from mlpipe.data import datasets
from mlpipe.data.features import labels, matrix

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    import xgboost as xgb
    from distributed import Client

    from mlpipe.compute.node_pools import Placement, TaskPods
    from mlpipe.core.spec import Spec

LABEL = "__mlpipe_label__"  # the label column of a partition, beside the feature columns
VALIDATION = "validation"
MEMORY_FRACTION = 0.5  # of this machine's memory, shared by a LocalCluster's workers
SCHEDULER_RESOURCES = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
IDLE_TIMEOUT = 600  # seconds: the operator deletes a cluster left without clients (a killed train task)
SHARDS_PER_WORKER = 2  # of the training split: uneven worker speeds even out


def read_shard(uri: str, feature_schema: dict[str, Any], spec: Spec) -> pd.DataFrame:
    """One Parquet shard as model inputs plus a 0/1 label column; runs on the worker that gets the partition."""
    frame = datasets.read(uri)
    encoded = matrix(frame, feature_schema)
    encoded[LABEL] = labels(frame, spec)
    return encoded


def partition_meta(feature_schema: dict[str, Any]) -> pd.DataFrame:
    """The empty frame every partition looks like: the encoded features (training categories) and the label."""
    import pandas as pd

    empty = pd.DataFrame({column: pd.Series(dtype=object) for column in feature_schema["columns"]})
    meta = matrix(empty, feature_schema)
    meta[LABEL] = pd.Series(dtype="int8")
    return meta


def shard_frame(shard_uris: list[str], feature_schema: dict[str, Any], spec: Spec) -> dd.DataFrame:
    """A Dask DataFrame with one partition per shard, each read and encoded by a worker."""
    import dask.dataframe as dd

    if not shard_uris:
        raise ValueError("no shards to train on: give at least one Parquet URI")
    return dd.from_map(read_shard, [uris.normalize(uri) for uri in shard_uris], feature_schema=feature_schema,
                       spec=spec, meta=partition_meta(feature_schema), label="read-shard", enforce_metadata=True)


def train_on_dask(client: Client, params: dict[str, Any], train_shards: list[str], validation_shards: list[str],
                  feature_schema: dict[str, Any], spec: Spec,
                  callbacks: list[xgb.callback.TrainingCallback] | None = None,
                  ) -> tuple[xgb.Booster, dict[str, list[float]], float]:
    """``xgboost.dask.train`` with early stopping on the validation shards; the contract of ``fit_booster``.

    ``params`` are the booster params of :func:`mlpipe.steps.train.booster_params` (each worker
    boosts with as many threads as it has); rounds and early stopping come from ``spec.training``.
    Returns the booster (``best_iteration`` set), the validation metrics of every round keyed by
    metric name, and the seconds of ``xgboost.dask.train`` (which builds the workers' quantile
    matrices from the shards already read).
    """
    import xgboost.dask as dxgb

    train_frame, validation_frame = (shard_frame(shards, feature_schema, spec)
                                     for shards in (train_shards, validation_shards))
    columns = feature_schema["columns"]
    dtrain = dxgb.DaskQuantileDMatrix(client, train_frame[columns], train_frame[LABEL], enable_categorical=True)
    dvalid = dxgb.DaskQuantileDMatrix(client, validation_frame[columns], validation_frame[LABEL],
                                          enable_categorical=True, ref=dtrain)
    started = time.perf_counter()
    output = dxgb.train(client, params, dtrain, num_boost_round=spec.training.num_boost_round,
                            evals=[(dvalid, VALIDATION)], early_stopping_rounds=spec.training.early_stopping_rounds,
                            verbose_eval=False, callbacks=callbacks)
    return output["booster"], output["history"][VALIDATION], time.perf_counter() - started


def write_shards(frame: pd.DataFrame, folder: str, shards: int) -> list[str]:
    """Write ``frame`` as ``shards`` Parquet files of consecutive rows under ``folder``; their URIs in order."""
    writer, size = datasets.PartWriter(uris.normalize(folder)), math.ceil(len(frame) / shards)
    for start in range(0, len(frame), size):
        writer.write(frame.iloc[start:start + size])
    return writer.uris


@contextlib.contextmanager
def local_cluster(workers: int, memory_fraction: float = MEMORY_FRACTION) -> Iterator[Client]:
    """A client of a new ``LocalCluster``: ``workers`` processes of one thread, closed on exit.

    The workers share ``memory_fraction`` of this machine's memory (Dask pauses a worker at 80%
    of its share and restarts it at 95%). Everything listens on 127.0.0.1 and random ports, without
    a dashboard. Worker processes are spawned: a script using this needs ``if __name__ == "__main__"``.
    """
    import psutil
    from distributed import Client, LocalCluster

    if workers < 1:
        raise ValueError(f"workers: need at least 1, got {workers}")
    limit = int(psutil.virtual_memory().total * memory_fraction / workers)
    with (LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=limit,
                       host="127.0.0.1", dashboard_address=None, silence_logs=logging.WARNING,
                       scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"}) as cluster,
          Client(cluster) as client):
        yield client


def _cpus(resources: dict[str, dict[str, Any]]) -> int:
    """Worker threads for a container's CPU limit (else request): whole CPUs, at least one."""
    cpu = str(resources.get("limits", {}).get("cpu") or resources.get("requests", {}).get("cpu") or "1")
    return max(1, int(float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)))


def _pod(container: dict[str, Any], placement: Placement, image: str, task_pods: TaskPods,
         command: list[str]) -> dict[str, Any]:
    """A DaskCluster pod spec: the operator's container with mlpipe's image, placement and lock-down."""
    env = {**node_pools.pod_env(placement.pool), "DASK_TEMPORARY_DIRECTORY": TMP}
    container = {**container, "image": image, "command": command,
                 "env": [{"name": name, "value": value} for name, value in env.items()],
                 "envFrom": node_pools.env_from(task_pods), "resources": node_pools.quantities(placement.resources),
                 "volumeMounts": [{"name": "tmp", "mountPath": TMP}],
                 "securityContext": node_pools.CONTAINER_SECURITY}
    return {"serviceAccountName": task_pods.service_account, "nodeSelector": dict(placement.pool.node_selector),
            "tolerations": list(placement.pool.tolerations), "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}], "securityContext": node_pools.POD_SECURITY}


def cluster_spec(name: str, task_pods: TaskPods, workers: Placement, scheduler: Placement, n_workers: int,
                 labels: dict[str, str] | None = None, idle_timeout: int = IDLE_TIMEOUT) -> dict[str, Any]:
    """The ``DaskCluster`` resource (``kubernetes.dask.org/v1``) of a training cluster, as a dict.

    Rendered by ``dask_kubernetes.operator.make_cluster_spec`` and then placed: ``n_workers`` worker
    pods on the ``workers`` placement (its pool's image, nodeSelector, tolerations, env and the
    step's resources; one thread per CPU of the limit), the scheduler from the *same image* (client,
    scheduler and workers must run the same versions) on the ``scheduler`` placement's nodes with
    small resources. Every pod is locked down as step pods are (non-root, read-only root filesystem
    with ``/tmp`` an emptyDir) and gets the step pods' credentials (``envFrom``). The operator
    deletes the cluster after ``idle_timeout`` seconds without a client.
    """
    from dask_kubernetes.operator import make_cluster_spec

    image = workers.pool.image
    manifest = make_cluster_spec(name=name, image=image, n_workers=n_workers, idle_timeout=idle_timeout)
    manifest["metadata"].update(namespace=task_pods.namespace,
                                labels={"app.kubernetes.io/part-of": "mlpipe", **(labels or {})})
    worker_pod, scheduler_pod = manifest["spec"]["worker"], manifest["spec"]["scheduler"]
    [worker], [leader] = worker_pod["spec"]["containers"], scheduler_pod["spec"]["containers"]
    threads = _cpus(workers.resources.model_dump())
    worker_pod["spec"] = _pod({**worker, "args": ["worker", "--name", "$(DASK_WORKER_NAME)", "--nthreads",
                                                  str(threads), "--dashboard-address", "8788",
                                                  "--local-directory", TMP]},
                              workers, image, task_pods, command=["dask"])
    small = scheduler.model_copy(update={"resources": PodResources.model_validate(SCHEDULER_RESOURCES)})
    scheduler_pod["spec"] = _pod({**leader, "args": ["scheduler", "--host", "0.0.0.0"]},  # noqa: S104 - in its pod
                                 small, image, task_pods, command=["dask"])
    return manifest


def train_cluster_spec(spec: Spec, name: str, n_workers: int, task_pods: TaskPods | None = None,
                       force_cpu: bool = False) -> dict[str, Any]:
    """The DaskCluster of ``spec``'s train step: workers where the spec places ``train``, scheduler on the CPU pool."""
    task_pods = task_pods or node_pools.load()
    workers = node_pools.placement(task_pods, spec, "train", force_cpu=force_cpu)
    scheduler = node_pools.placement(task_pods, spec, "train", force_cpu=True)
    return cluster_spec(name, task_pods, workers, scheduler, n_workers,
                        labels={"mlpipe.io/pipeline": spec.name, "mlpipe.io/step": "train"})


@contextlib.contextmanager
def kube_cluster(manifest: dict[str, Any]) -> Iterator[Client]:
    """Create the DaskCluster ``manifest`` (the Dask operator must run in the cluster), connect; delete on exit."""
    from dask_kubernetes.operator import KubeCluster
    from distributed import Client

    with (KubeCluster(custom_cluster_spec=manifest, namespace=manifest["metadata"]["namespace"],
                      shutdown_on_close=True, quiet=True) as cluster,
          Client(cluster) as client):
        yield client


@contextlib.contextmanager
def dask_client(workers: int, scheduler_address: str | None = None, kubernetes: dict[str, Any] | None = None,
                ) -> Iterator[Client]:
    """A client of the running scheduler at ``scheduler_address``, else of a new cluster.

    The new cluster is the DaskCluster ``kubernetes`` (a :func:`cluster_spec`) when given, else a
    :func:`local_cluster` of ``workers`` processes.
    """
    from distributed import Client

    if scheduler_address:
        with Client(scheduler_address) as client:
            yield client
    elif kubernetes:
        with kube_cluster(kubernetes) as client:
            yield client
    else:
        with local_cluster(workers) as client:
            yield client


def shards_of(uri: str, folder: str, shards: int) -> list[str]:
    """The shards of a split: its own Parquet parts when it has at least ``shards``, else ``shards`` new ones.

    A split with fewer parts than that holds fewer than ``shards`` x ``data.batch_rows`` rows, so
    re-sharding it in memory stays bounded.
    """
    parts = datasets.files(uri)
    if len(parts) >= shards:
        return parts
    return write_shards(datasets.read(uri), folder, shards)


def fit_distributed(spec: Spec, params: dict[str, Any], parts: dict[str, str],
                    feature_schema: dict[str, Any], folder: str, workers: int, scheduler_address: str | None = None,
                    kubernetes: bool = False) -> tuple[xgb.Booster, dict[str, list[float]], float]:
    """The train step on Dask: the ``train``/``validation`` splits' parts are the shards (:func:`shards_of`).

    The cluster is the scheduler at ``scheduler_address`` when given, else a new DaskCluster of
    ``workers`` pods placed like the train step (``kubernetes``), else a LocalCluster of ``workers``
    processes. Returns what :func:`train_on_dask` returns.
    """
    shards = {part: shards_of(parts[part], uris.join(folder, part), workers * SHARDS_PER_WORKER)
              for part in ("train", VALIDATION)}
    name = f"{spec.name.replace('_', '-')[:40]}-train-{secrets.token_hex(4)}"  # DNS label, unique per fit
    manifest = train_cluster_spec(spec, name, workers) if kubernetes and not scheduler_address else None
    with dask_client(workers, scheduler_address, manifest) as client:
        return train_on_dask(client, params, shards["train"], shards[VALIDATION], feature_schema, spec)
