"""The Helm chart helm/mlpipe, rendered and linted offline by the real Helm (helm-python-sdk embeds it) and every
manifest validated against the Kubernetes schemas (kubernetes-validate).

The official Airflow chart cannot be downloaded here, so each test renders a copy of the chart whose charts/
holds a stub named `airflow` (a Chart.yaml and nothing else) at the pinned version: Helm then treats the
dependency as present and renders mlpipe's own templates; the Airflow chart's objects are not rendered.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mlpipe"
KUBE_VERSION = "1.31.0"
RELEASE, NAMESPACE = "mlpipe", "mlpipe"
TASKS_NAMESPACE = "mlpipe-tasks"

# The node pools file's default content, exactly as the Kubernetes runtime expects it.
EXPECTED_NODE_POOLS = yaml.safe_load("""
namespace: mlpipe-tasks
service_account: mlpipe-task
env_from:
  - {secret: mlpipe-task-credentials}
  - {config_map: mlpipe-task-config}
startup_timeout_seconds: 600
pools:
  cpu:
    image: ghcr.io/mlpipe/task:0.1.0
    node_selector: {mlpipe.io/pool: cpu}
    tolerations: []
    resources: {requests: {cpu: "1", memory: 2Gi}, limits: {cpu: "2", memory: 4Gi}}
    env: {MLPIPE_DEVICE: cpu}
  gpu:
    image: ghcr.io/mlpipe/task-gpu:0.1.0
    node_selector: {mlpipe.io/pool: gpu}
    tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
    resources: {requests: {cpu: "2", memory: 8Gi}, limits: {cpu: "4", memory: 16Gi, nvidia.com/gpu: "1"}}
    env: {MLPIPE_DEVICE: cuda}
""")

GPU_POOL_CHANGED = {"nodePools": {"gpu": {
    "image": "registry.example/mlpipe/task-gpu:0.2.0",
    "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    "resources": {"requests": {"cpu": "8", "memory": "32Gi"},
                  "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}},
}}}
VARIANTS = {
    "defaults": {},
    "kubernetes-executor": {"airflow": {"executor": "KubernetesExecutor"}},
    "gpu-pool-changed": GPU_POOL_CHANGED,
    "other-tasks-namespace": {"tasks": {"namespace": "ml-steps", "createNamespace": False}},
    "sse-kms-and-minio": {"s3": {"endpointUrl": "http://minio.minio:9000",
                                 "serverSideEncryption": {"kmsKeyId": "arn:aws:kms:eu-west-1:111122223333:key/abc"}}},
    "no-autoscaling": {"modelServer": {"autoscaling": {"enabled": False}, "networkPolicy": {"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "frontend"}}}]}}},
}


@pytest.fixture(scope="module")
def chart_dir(tmp_path_factory) -> Path:
    """A copy of the chart with a stub `airflow` dependency at the pinned version under charts/."""
    copied = tmp_path_factory.mktemp("chart") / "mlpipe"
    shutil.copytree(CHART, copied)
    (dependency,) = yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]
    stub = copied / "charts" / "airflow"
    stub.mkdir(parents=True)
    (stub / "Chart.yaml").write_text(f"apiVersion: v2\nname: airflow\nversion: {dependency['version']}\n")
    return copied


@pytest.fixture(scope="module")
def chart(chart_dir):
    with helm.Chart.load(chart_dir) as loaded:
        yield loaded


def render(chart, values: dict | None = None) -> list[dict]:
    """Every object the chart renders with ``values``."""
    rendered = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [document for path, text in sorted(rendered.items()) if path.endswith((".yaml", ".yml"))
            for document in yaml.safe_load_all(text) if document]


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [item for item in objects if item["kind"] == kind and (name is None or item["metadata"]["name"] == name)]


def node_pools(objects: list[dict]) -> dict:
    (config_map,) = find(objects, "ConfigMap", "mlpipe-node-pools")
    assert config_map["metadata"]["namespace"] == NAMESPACE
    return yaml.safe_load(config_map["data"]["node_pools.yaml"])


def merge(base: dict, override: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in override.items():
        result[key] = merge(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) \
            else value
    return result


def test_the_airflow_dependency_is_the_official_chart_pinned():
    (dependency,) = yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]
    assert dependency["name"] == "airflow" and dependency["repository"] == "https://airflow.apache.org"
    assert re.fullmatch(r"\d+\.\d+\.\d+", dependency["version"])
    assert not (CHART / "charts").exists(), "the official chart is fetched by `helm dependency build`, not vendored"


def test_the_stub_stands_in_for_the_dependency(chart_dir):
    assert [item["status"] for item in helm.dependency_list(chart_dir)] == ["unpacked"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_passes(chart_dir, variant):
    report = helm.lint(chart_dir, VARIANTS[variant], strict=True, namespace=NAMESPACE,
                       kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [message for message in report["messages"] if message["severity"] >= 2] == []


def test_helm_lint_reports_a_broken_chart(chart_dir, tmp_path):
    """The lint above can fail: a template error is reported."""
    broken = tmp_path / "mlpipe"
    shutil.copytree(chart_dir, broken)
    (broken / "templates" / "broken.yaml").write_text("kind: ConfigMap\nmetadata: {{ .Values.nope.missing }}\n")
    assert helm.lint(broken, strict=True)["messages"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_manifest_validates_against_the_kubernetes_schemas(chart, variant):
    objects = render(chart, VARIANTS[variant])
    assert len(objects) >= 15
    for item in objects:
        kubernetes_validate.validate(item, KUBE_VERSION, strict=True)


def test_schema_validation_can_fail(chart):
    (deployment, *_) = find(render(chart), "Deployment")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSION, strict=True)


def test_default_objects(chart):
    kinds = sorted(f"{item['kind']}/{item['metadata']['name']}" for item in render(chart))
    assert kinds == sorted([
        "ConfigMap/mlpipe-airflow-config", "ConfigMap/mlpipe-node-pools", "ConfigMap/mlpipe-task-config",
        "ConfigMap/mlpipe-bucket-policy",
        "Deployment/mlpipe-mlflow", "Deployment/mlpipe-model-server",
        "HorizontalPodAutoscaler/mlpipe-model-server", "Namespace/mlpipe-tasks",
        "NetworkPolicy/default-deny-all", "NetworkPolicy/mlpipe-model-server", "NetworkPolicy/step-pods-egress",
        "Role/mlpipe-pod-launcher", "RoleBinding/mlpipe-pod-launcher",
        "Service/mlpipe-mlflow", "Service/mlpipe-model-server",
        "ServiceAccount/mlpipe-mlflow", "ServiceAccount/mlpipe-model-server", "ServiceAccount/mlpipe-task",
    ])


@pytest.mark.parametrize("variant", ["defaults", "other-tasks-namespace", "kubernetes-executor"])
def test_rbac_is_only_in_the_tasks_namespace_and_only_for_pods(chart, variant):
    objects = render(chart, VARIANTS[variant])
    tasks_namespace = merge({"tasks": {"namespace": TASKS_NAMESPACE}}, VARIANTS[variant])["tasks"]["namespace"]
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
    (role,) = find(objects, "Role")
    (binding,) = find(objects, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == tasks_namespace
    granted = {(resource, verb) for rule in role["rules"] for resource in rule["resources"] for verb in rule["verbs"]}
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    assert granted == {*(("pods", verb) for verb in ["create", "get", "list", "watch", "delete", "patch"]),
                       ("pods/log", "get"), ("events", "list")}
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "mlpipe-pod-launcher"}
    assert {(subject["name"], subject["namespace"]) for subject in binding["subjects"]} == {
        ("mlpipe-airflow-scheduler", NAMESPACE), ("mlpipe-airflow-worker", NAMESPACE),
        ("mlpipe-airflow-triggerer", NAMESPACE)}
    # The names bound are the ones the Airflow chart is told to give its ServiceAccounts.
    airflow = chart.values["airflow"]
    assert {airflow[component]["serviceAccount"]["name"] for component in ["scheduler", "workers", "triggerer"]} \
        == {subject["name"] for subject in binding["subjects"]}


def test_rbac_falls_back_to_the_official_charts_service_account_names(chart):
    unnamed = {"airflow": {component: {"serviceAccount": {"name": ""}}
                           for component in ["scheduler", "workers", "triggerer"]}}
    (binding,) = find(render(chart, unnamed), "RoleBinding")
    assert [subject["name"] for subject in binding["subjects"]] == [
        "mlpipe-airflow-scheduler", "mlpipe-airflow-worker", "mlpipe-airflow-triggerer"]


def test_step_pods_service_account_has_no_token(chart):
    (account,) = find(render(chart), "ServiceAccount", "mlpipe-task")
    assert account["metadata"]["namespace"] == TASKS_NAMESPACE
    assert account["automountServiceAccountToken"] is False


def test_model_server_probes_token_and_autoscaler(chart):
    objects = render(chart)
    (deployment,) = find(objects, "Deployment", "mlpipe-model-server")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["serve", "/opt/mlpipe/pipelines/loan_default.yaml"]
    assert container["args"][2:] == ["--host", "0.0.0.0", "--port", "8000"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    (token,) = [env for env in container["env"] if env["name"] == "MLPIPE_SERVE_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "mlpipe-serve-token", "key": "token"}
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    (hpa,) = find(objects, "HorizontalPodAutoscaler", "mlpipe-model-server")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "mlpipe-model-server"}
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


def test_model_server_without_autoscaler_has_replicas_and_restricted_ingress(chart):
    objects = render(chart, VARIANTS["no-autoscaling"])
    assert not find(objects, "HorizontalPodAutoscaler")
    (deployment,) = find(objects, "Deployment", "mlpipe-model-server")
    assert deployment["spec"]["replicas"] == 2
    (policy,) = find(objects, "NetworkPolicy", "mlpipe-model-server")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert rule["from"] == VARIANTS["no-autoscaling"]["modelServer"]["networkPolicy"]["from"]


def test_mlflow_gets_its_backend_from_a_secret_and_serves_artifacts(chart):
    objects = render(chart, VARIANTS["sse-kms-and-minio"])
    (deployment,) = find(objects, "Deployment", "mlpipe-mlflow")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["mlflow", "server"]
    assert "--serve-artifacts" in container["args"]
    assert "--artifacts-destination=s3://mlpipe/mlflow" in container["args"]
    env = {item["name"]: item for item in container["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"] == {"name": "mlpipe-mlflow",
                                                                            "key": "backend-store-uri"}
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio.minio:9000"
    assert yaml.safe_load(env["MLFLOW_S3_UPLOAD_EXTRA_ARGS"]["value"]) == {
        "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "arn:aws:kms:eu-west-1:111122223333:key/abc"}
    (default,) = find(render(chart), "Deployment", "mlpipe-mlflow")
    env = {item["name"]: item for item in default["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert yaml.safe_load(env["MLFLOW_S3_UPLOAD_EXTRA_ARGS"]["value"]) == {"ServerSideEncryption": "AES256"}
    assert "mlpipe-mlflow.mlpipe.svc:5000" in env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")


def bucket_policy(objects: list[dict]) -> dict:
    (config,) = find(objects, "ConfigMap", "mlpipe-bucket-policy")
    return json.loads(config["data"]["policy.json"])


def denied_put(policy: dict, headers: dict[str, str]) -> bool:
    """Whether the policy's Deny statements refuse an HTTPS PutObject sending these encryption ``headers``."""
    for statement in policy["Statement"]:
        if statement["Effect"] != "Deny" or statement["Action"] not in ("s3:PutObject", "s3:*"):
            continue
        for operator, conditions in statement["Condition"].items():
            for key, expected in conditions.items():
                given = {"aws:SecureTransport": "true"}.get(key, headers.get(key))
                if ((operator == "Null" and (given is None) == (expected == "true"))
                        or (operator == "StringNotEquals" and given is not None and given != expected)
                        or (operator == "Bool" and given == expected)):
                    return True
    return False


SSE = "s3:x-amz-server-side-encryption"
KMS_KEY = "arn:aws:kms:eu-west-1:111122223333:key/abc"


def test_the_bucket_policy_denies_unencrypted_puts(chart):
    policy = bucket_policy(render(chart))
    assert {s["Resource"] if isinstance(s["Resource"], str) else s["Resource"][0] for s in policy["Statement"]} == {
        "arn:aws:s3:::mlpipe/*", "arn:aws:s3:::mlpipe"}
    assert denied_put(policy, {})  # what a plain boto3 put_object sends
    assert denied_put(policy, {SSE: "aws:kms"})  # no key configured: SSE-S3 is the rule
    assert not denied_put(policy, {SSE: "AES256"})
    objects = render(chart, VARIANTS["sse-kms-and-minio"])
    for name in ("mlpipe-task-config", "mlpipe-airflow-config"):  # steps, Airflow, the model server send the key
        (config,) = find(objects, "ConfigMap", name)
        assert config["data"]["MLPIPE_S3_KMS_KEY_ID"] == KMS_KEY
    kms = bucket_policy(objects)
    assert denied_put(kms, {}) and denied_put(kms, {SSE: "AES256"})
    assert denied_put(kms, {SSE: "aws:kms", f"{SSE}-aws-kms-key-id": "arn:aws:kms:eu-west-1:111122223333:key/other"})
    assert not denied_put(kms, {SSE: "aws:kms", f"{SSE}-aws-kms-key-id": KMS_KEY})
    (plain_http,) = [s for s in kms["Statement"] if s["Sid"] == "DenyPlainHttp"]
    assert plain_http["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} and plain_http["Action"] == "s3:*"


def test_a_managed_bucket_carries_the_policy_and_default_encryption(chart):
    objects = render(chart, merge(VARIANTS["sse-kms-and-minio"], {"s3": {"bucket": {"manage": True}}}))
    (bucket,) = find(objects, "Bucket", "mlpipe")
    assert bucket["apiVersion"] == "s3.services.k8s.aws/v1alpha1" and bucket["spec"]["name"] == "mlpipe"
    assert json.loads(bucket["spec"]["policy"]) == bucket_policy(objects)
    (rule,) = bucket["spec"]["encryption"]["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyID": KMS_KEY}
    assert all(bucket["spec"]["publicAccessBlock"].values())
    assert not find(render(chart), "Bucket")


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_credentials_are_inlined(chart, variant):
    secretish = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|CREDENTIAL|BACKEND_STORE_URI")
    objects = render(chart, VARIANTS[variant])
    assert not find(objects, "Secret"), "the chart only references Secrets"
    for item in objects:
        for container in item.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for env in container.get("env", []):
                if secretish.search(env["name"]):
                    assert "valueFrom" in env and "value" not in env, f"{env['name']} is inlined"
        for key in item.get("data", {}) if item["kind"] == "ConfigMap" else []:
            assert not secretish.search(key), f"{key} in ConfigMap {item['metadata']['name']}"


def test_node_pools_file_is_exactly_the_runtimes_format(chart):
    assert node_pools(render(chart)) == EXPECTED_NODE_POOLS


def test_node_pools_file_follows_the_values(chart):
    pools = node_pools(render(chart, GPU_POOL_CHANGED))
    expected = merge(EXPECTED_NODE_POOLS["pools"], GPU_POOL_CHANGED["nodePools"])
    assert pools["pools"] == expected
    assert pools["pools"]["gpu"]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pools["pools"]["cpu"] == EXPECTED_NODE_POOLS["pools"]["cpu"]

    moved = node_pools(render(chart, {"tasks": {"namespace": "ml-steps", "startupTimeoutSeconds": 900,
                                                "credentialsSecret": "steps-creds"}}))
    assert moved["namespace"] == "ml-steps" and moved["startup_timeout_seconds"] == 900
    assert moved["env_from"] == [{"secret": "steps-creds"}, {"config_map": "mlpipe-task-config"}]


def test_tasks_namespace_objects_follow_tasks_namespace(chart):
    objects = render(chart, VARIANTS["other-tasks-namespace"])
    assert not find(objects, "Namespace")
    for item in objects:
        tasks_object = item["kind"] in {"Role", "RoleBinding", "NetworkPolicy"}
        if tasks_object and item["metadata"]["name"] != "mlpipe-model-server":
            assert item["metadata"]["namespace"] == "ml-steps"
    (config,) = find(objects, "ConfigMap", "mlpipe-task-config")
    assert config["metadata"]["namespace"] == "ml-steps"


def test_task_config_holds_the_non_secret_env(chart):
    (config,) = find(render(chart, {"tasks": {"configMap": {"env": {"MLPIPE_OPTUNA_DIR": "/tmp/optuna"}}}}),
                     "ConfigMap", "mlpipe-task-config")
    assert config["data"] == {
        "MLPIPE_STORE": "s3://mlpipe/store",
        "MLFLOW_TRACKING_URI": "http://mlpipe-mlflow.mlpipe.svc:5000",
        "MLPIPE_SERVER_URL": "http://mlpipe-model-server.mlpipe.svc:8000",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLPIPE_OPTUNA_DIR": "/tmp/optuna",
    }


def test_tasks_namespace_denies_by_default_and_allows_dns(chart):
    objects = render(chart)
    (deny,) = find(objects, "NetworkPolicy", "default-deny-all")
    assert deny["metadata"]["namespace"] == TASKS_NAMESPACE
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    (egress,) = find(objects, "NetworkPolicy", "step-pods-egress")
    assert "ingress" not in egress["spec"]
    ports = [{port["port"] for port in rule["ports"]} for rule in egress["spec"]["egress"]]
    assert ports == [{53}, {5000}, {8000}, {443}, {5432}]


def test_airflow_values_wire_the_kubernetes_runtime(chart):
    airflow = chart.values["airflow"]
    assert airflow["executor"] == "CeleryExecutor"
    env = {item["name"]: item["value"] for item in airflow["env"]}
    assert env["MLPIPE_RUNTIME"] == "kubernetes"
    mount, passwords_mount = airflow["volumeMounts"]
    assert f"{mount['mountPath']}" == env["MLPIPE_NODE_POOLS"] and mount["subPath"] == "node_pools.yaml"
    volume, passwords = airflow["volumes"]
    assert volume["name"] == mount["name"] and volume["configMap"]["name"] == "mlpipe-node-pools"
    assert passwords == {"name": passwords_mount["name"], "secret": {"secretName": "mlpipe-airflow-passwords"}}
    assert airflow["images"]["airflow"]["repository"] == "ghcr.io/mlpipe/airflow"
    assert airflow["airflowVersion"] == "3.3.2"
    env_from = yaml.safe_load(airflow["extraEnvFrom"])
    assert env_from == [{"configMapRef": {"name": "mlpipe-airflow-config"}},
                        {"secretRef": {"name": "mlpipe-airflow-credentials"}}]
    for key in ["fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"]:
        assert airflow[key], f"airflow.{key} must name an existing Secret"
    assert not {"fernetKey", "apiSecretKey", "jwtSecret", "webserverSecretKey"} & set(airflow)


def test_the_airflow_ui_and_api_require_a_login(chart):
    """The official chart gets the simple auth manager, named users, no all-admins, passwords from a Secret."""
    airflow = chart.values["airflow"]
    core = airflow["config"]["core"]
    assert core["auth_manager"].endswith("simple_auth_manager.SimpleAuthManager")
    assert core["simple_auth_manager_all_admins"] == "False"
    roles = dict(pair.split(":") for pair in core["simple_auth_manager_users"].split(","))
    assert roles == {"admin": "admin", "ops": "op", "watcher": "viewer"}
    (mount,) = [m for m in airflow["volumeMounts"] if m["name"] == "mlpipe-airflow-passwords"]
    assert core["simple_auth_manager_passwords_file"] == f"{mount['mountPath']}/passwords.json" and mount["readOnly"]


def test_kubernetes_executor_is_a_value(chart):
    assert chart.merge_values(VARIANTS["kubernetes-executor"])["airflow"]["executor"] == "KubernetesExecutor"


# Keys whose children are free-form data (resources, labels, env maps), not settings documented one by one.
FREE_FORM = {"resources", "requests", "limits", "node_selector", "env", "matchLabels", "namespaceSelector",
             "podSelector"}


def test_every_values_key_is_documented():
    """Like the official chart's values.yaml: a comment line right above every key."""
    undocumented, parents = [], []  # parents: (indent, key) of the enclosing mappings
    lines = (CHART / "values.yaml").read_text().splitlines()
    skip_deeper_than = None
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if skip_deeper_than is not None and (indent > skip_deeper_than
                                             or (indent == skip_deeper_than and stripped.startswith("- "))):
            continue
        skip_deeper_than = None
        if stripped.startswith("- ") or stripped.endswith("|"):  # list items and block scalars: data
            skip_deeper_than = indent
        match = re.match(r"([\w./-]+):", stripped)
        if not match or stripped.startswith("- "):
            continue
        parents = [(level, key) for level, key in parents if level < indent]
        if not (parents and parents[-1][1] in FREE_FORM):
            previous = next(lines[index].strip() for index in range(number - 1, -1, -1) if lines[index].strip())
            if not previous.startswith("#"):
                undocumented.append(".".join([key for _, key in parents] + [match.group(1)]))
        parents.append((indent, match.group(1)))
    assert undocumented == []


def test_changing_the_gpu_pool_in_the_values_changes_the_training_pod(chart, tmp_path, monkeypatch):
    from mlpipe.core.settings import NODE_POOLS
    from tests.conftest import SPEC_PATH
    from tests.unit.orchestration.test_kubernetes_runtime import pod_manifest, step_operators

    rendered = tmp_path / "node_pools.yaml"  # what the chart mounts at $MLPIPE_NODE_POOLS
    rendered.write_text(yaml.safe_dump(node_pools(render(chart, GPU_POOL_CHANGED))))
    monkeypatch.setenv(NODE_POOLS, str(rendered))
    pods = {op.task_id: pod_manifest(op) for op in step_operators(SPEC_PATH)}
    train, analyze = pods["train_model"], pods["analyze_model"]
    assert train["spec"]["containers"][0]["image"] == "registry.example/mlpipe/task-gpu:0.2.0"
    assert train["spec"]["nodeSelector"]["cloud.google.com/gke-accelerator"] == "nvidia-l4"  # merged into the pool's
    assert train["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert analyze["spec"]["containers"][0]["image"] == EXPECTED_NODE_POOLS["pools"]["cpu"]["image"]
    kubernetes_validate.validate(train, "1.31", strict=True)
