"""Podman in the kubelet's place: play a step's pod manifest, wait for it, and read how it ended.

``podman kube play`` runs a Kubernetes Pod manifest as it is: its image, command and arguments, env,
``envFrom`` Secrets and ConfigMaps, the pod and container securityContext (user, read-only root
filesystem, dropped capabilities), the ``emptyDir`` on /tmp and the resource limits. It ignores what only a
cluster does (namespace, service account, nodeSelector, tolerations, activeDeadlineSeconds, the
``nvidia.com/gpu`` limit). The pods join the host's network, where the S3 endpoint and the MLflow server
of the tests listen on 127.0.0.1.

Podman reads this project's settings (images/podman/containers.conf), not the machine's.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes.client import models as k8s

from mlpipe.orchestration.kubernetes import CONTAINER

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "images" / "podman" / "containers.conf"
# What a pod's termination message holds with FallbackToLogsOnError: the end of its log, at most 2 KiB / 80 lines.
MESSAGE_BYTES, MESSAGE_LINES = 2048, 80


def engine() -> str | None:
    return shutil.which("podman")


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``podman args`` with the project's containers.conf (stderr merged into stdout); fail with its
    output when ``check``."""
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONF))}
    done = subprocess.run(["podman", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env=env)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n{done.stdout}")
    return done


def image_exists(image: str) -> bool:
    return podman("image", "exists", image, check=False).returncode == 0


def secret(manifest: dict) -> None:
    """Create (or replace) the podman secret a pod's ``envFrom: secretRef`` names, from a Kubernetes Secret.

    Podman keeps what ``kube play`` reads for a secretRef as a JSON map of base64 values (the Secret's
    ``data``), under the Secret's name.
    """
    name = manifest["metadata"]["name"]
    data = {**manifest.get("data", {}),
            **{k: base64.b64encode(v.encode()).decode() for k, v in manifest.get("stringData", {}).items()}}
    podman("secret", "rm", name, check=False)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(data, file)
        file.flush()
        podman("secret", "create", name, file.name)


@dataclass
class PodEnd:
    """How a played pod's step container ended."""

    exit_code: int
    log: str

    def termination_message(self) -> str:
        """The message Kubernetes reports with FallbackToLogsOnError: the log's end when the container failed."""
        if self.exit_code == 0:
            return ""
        tail = "\n".join(self.log.splitlines()[-MESSAGE_LINES:])
        return tail.encode()[-MESSAGE_BYTES:].decode(errors="replace")

    def as_pod(self, manifest: dict) -> k8s.V1Pod:
        """The pod as the API server would report it once ended (what the operator's cleanup reads)."""
        ended = k8s.V1ContainerStateTerminated(exit_code=self.exit_code, message=self.termination_message())
        status = k8s.V1ContainerStatus(name=CONTAINER, state=k8s.V1ContainerState(terminated=ended),
                                       image=manifest["spec"]["containers"][0]["image"], image_id="",
                                       ready=False, restart_count=0)
        phase = "Succeeded" if self.exit_code == 0 else "Failed"
        return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=manifest["metadata"]["name"]),
                         status=k8s.V1PodStatus(phase=phase, container_statuses=[status]))


def play(manifest: dict, folder: Path, config_maps: list[dict], timeout: float = 900) -> PodEnd:
    """Play ``manifest`` (with ``config_maps`` for its configMapRefs), wait until its step ends, remove it."""
    name = manifest["metadata"]["name"]
    folder.mkdir(parents=True, exist_ok=True)
    pod_file = folder / f"{name}.yaml"
    pod_file.write_text(yaml.safe_dump(manifest))
    maps = []
    for config_map in config_maps:
        path = folder / f"{config_map['metadata']['name']}.configmap.yaml"
        path.write_text(yaml.safe_dump(config_map))
        maps += ["--configmap", str(path)]
    container = f"{name}-{CONTAINER}"
    try:
        podman("kube", "play", "--network", "host", *maps, str(pod_file))
        exit_code = int(podman("wait", container, timeout=timeout).stdout.split()[-1])
        return PodEnd(exit_code, podman("logs", container).stdout)
    finally:
        podman("kube", "down", str(pod_file), check=False)
