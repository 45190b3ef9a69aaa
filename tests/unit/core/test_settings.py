"""mlpipe.core.settings: the one reader of the environment, its defaults, values and checks."""

from __future__ import annotations

import ast
import re
import tempfile
from pathlib import Path

import pytest

from mlpipe.core import settings
from mlpipe.core.errors import Refused

PACKAGE = Path(settings.__file__).resolve().parents[1]  # plugins/mlpipe
README = PACKAGE.parents[1] / "README.md"
ENVIRONMENT_NAMES = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})

# accessor, its variable, its value when unset, a value to set, what the accessor returns then
ACCESSORS = [
    (settings.store, settings.STORE, "file:///tmp/mlpipe-store", "s3://bucket/store", "s3://bucket/store"),
    (settings.mlflow_tracking_uri, settings.MLFLOW_TRACKING_URI, None, "http://mlflow:5000", "http://mlflow:5000"),
    (settings.mlflow_artifacts, settings.MLFLOW_ARTIFACTS, None, "s3://bucket/mlflow", "s3://bucket/mlflow"),
    (settings.mlflow_ui, settings.MLFLOW_UI, "http://localhost:5000", "https://mlflow.example/", "https://mlflow.example/"),
    (settings.mlflow_http_max_retries, settings.MLFLOW_HTTP_MAX_RETRIES, 7, "3", 3),
    (settings.optuna_storage, settings.OPTUNA_STORAGE, None, "sqlite:///optuna.db", "sqlite:///optuna.db"),
    (settings.optuna_dir, settings.OPTUNA_DIR, Path(tempfile.gettempdir()) / "mlpipe-optuna", "/data/optuna",
     Path("/data/optuna")),
    (settings.server_url, settings.SERVER_URL, None, "http://serve:8000", "http://serve:8000"),
    (settings.node_pools, settings.NODE_POOLS, None, "/etc/mlpipe/pools.yaml", Path("/etc/mlpipe/pools.yaml")),
    (settings.runtime, settings.RUNTIME, "local", "kubernetes", "kubernetes"),
    (settings.device, settings.DEVICE, None, "cuda", "cuda"),
    (settings.git_commit, settings.GIT_COMMIT, None, "abc123", "abc123"),
    (settings.user, settings.USER, None, "alice", "alice"),
    (settings.pii_key, settings.PII_KEY, None, "k3y", "k3y"),
    (settings.serve_token, settings.SERVE_TOKEN, None, "t0ken", "t0ken"),
    (settings.s3_kms_key_id, settings.S3_KMS_KEY_ID, None, "arn:aws:kms:key", "arn:aws:kms:key"),
    (settings.s3_retry_seconds, settings.S3_RETRY_SECONDS, 120.0, "2.5", 2.5),
    (settings.promotion_lease_seconds, settings.PROMOTION_LEASE_SECONDS, 1800.0, "0.05", 0.05),
    (settings.promotion_wait_seconds, settings.PROMOTION_WAIT_SECONDS, 2400.0, "0", 0.0),
    (settings.serve_poll_seconds, settings.SERVE_POLL_SECONDS, 30.0, "2", 2.0),
    (settings.model_card, settings.MODEL_CARD, True, "0", False),
]
NUMBERS = [settings.S3_RETRY_SECONDS, settings.PROMOTION_LEASE_SECONDS, settings.PROMOTION_WAIT_SECONDS,
           settings.SERVE_POLL_SECONDS, settings.MLFLOW_HTTP_MAX_RETRIES]
ACCESSOR_OF = {name: accessor for accessor, name, *_ in ACCESSORS}


def environment_uses(path: Path) -> list[str]:
    """``line: code`` of each use of os.environ, os.getenv & co. in ``path`` (code, not docstrings or comments)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_NAMES:
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Name) and node.id in ENVIRONMENT_NAMES:
            found.append(f"{node.lineno}: {node.id}")
        elif isinstance(node, ast.ImportFrom) and any(alias.name in ENVIRONMENT_NAMES for alias in node.names):
            found.append(f"{node.lineno}: from {node.module} import ...")
    return sorted(found, key=lambda use: int(use.split(":")[0]))


def test_only_settings_reads_the_environment():
    files = sorted(PACKAGE.rglob("*.py"))
    assert PACKAGE / "core" / "settings.py" in files and len(files) > 20
    uses = {str(path.relative_to(PACKAGE)): found for path in files
            if path != PACKAGE / "core" / "settings.py" and (found := environment_uses(path))}
    assert uses == {}, "read the environment through mlpipe.core.settings only"


def test_the_check_sees_what_it_must(tmp_path):
    module = tmp_path / "module.py"
    module.write_text('"""Reads os.environ in a docstring: not a use."""\nimport os\nfrom os import getenv\n'
                      'A = os.environ.get("X")\nB = os.getenv("Y")\nC = getenv("Z")\n')
    assert environment_uses(module) == ["3: from os import ...", "4: os.environ", "5: os.getenv", "6: getenv"]


def test_every_variable_has_one_accessor_and_a_description():
    assert set(ACCESSOR_OF) == set(settings.VARIABLES) - {settings.MLFLOW_HTTP_BACKOFF_FACTOR,
                                                          settings.MLFLOW_HTTP_TIMEOUT}  # only ever set
    assert all(description.strip() for description in settings.VARIABLES.values())


@pytest.mark.parametrize(("accessor", "name", "default", "text", "value"), ACCESSORS,
                         ids=[name for _, name, *_ in ACCESSORS])
def test_an_accessor_reads_its_variable_at_call_time(monkeypatch, accessor, name, default, text, value):
    monkeypatch.delenv(name, raising=False)
    assert accessor() == default
    monkeypatch.setenv(name, "")  # empty counts as unset
    assert accessor() == default
    monkeypatch.setenv(name, text)
    assert accessor() == value


@pytest.mark.parametrize("name", NUMBERS)
@pytest.mark.parametrize(("text", "problem"), [("abc", "is not a"), ("-1", "must be 0 or more"),
                                               ("nan", "")])
def test_a_malformed_number_is_refused_naming_the_variable(monkeypatch, name, text, problem):
    monkeypatch.setenv(name, text)
    with pytest.raises(settings.SettingError, match=re.escape(f"${name}={text!r} {problem}")) as raised:
        ACCESSOR_OF[name]()
    assert isinstance(raised.value, Refused) and isinstance(raised.value, ValueError)


@pytest.mark.parametrize(("name", "text"), [(settings.DEVICE, "tpu"), (settings.RUNTIME, "docker"),
                                            (settings.MODEL_CARD, "yes")])
def test_a_value_outside_the_choices_is_refused(monkeypatch, name, text):
    monkeypatch.setenv(name, text)
    with pytest.raises(settings.SettingError, match=re.escape(f"${name}={text!r}: expected one of ")):
        ACCESSOR_OF[name]()


def test_environment_copies_it_with_overrides(monkeypatch):
    monkeypatch.setenv(settings.DEVICE, "cuda")
    monkeypatch.setenv(settings.STORE, "s3://bucket/store")
    env = settings.environment(**{settings.DEVICE: "cpu"})
    assert env[settings.DEVICE] == "cpu" and env[settings.STORE] == "s3://bucket/store"
    assert settings.device() == "cuda"  # the process's own environment is left alone


def test_set_default_keeps_a_value_that_is_set(monkeypatch):
    monkeypatch.delenv(settings.MLFLOW_HTTP_TIMEOUT, raising=False)
    assert settings.set_default(settings.MLFLOW_HTTP_TIMEOUT, "60") == "60"
    monkeypatch.setenv(settings.MLFLOW_HTTP_MAX_RETRIES, "0")
    assert settings.set_default(settings.MLFLOW_HTTP_MAX_RETRIES, "3") == "0"
    assert settings.mlflow_http_max_retries() == 0


def test_the_readme_documents_every_mlpipe_variable():
    table = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(MLPIPE_[A-Z0-9_]+)`", table))
    assert documented == {name for name in settings.VARIABLES if name.startswith("MLPIPE_")}
