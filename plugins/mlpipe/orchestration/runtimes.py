"""Runtimes: how a DAG task runs a step. One setting, ``$MLPIPE_RUNTIME``, picks one.

- ``local`` (default): the step CLI in a subprocess of the Airflow worker
  (``airflow dags test``, LocalExecutor, the Celery workers of docker-compose);
- ``kubernetes``: a pod per step on the step's node pool
  (:mod:`mlpipe.orchestration.kubernetes`, imported only when chosen).

Every runtime runs the same command, ``python -m mlpipe step <step> --run <run uri>``,
and hands back the step's ``result.json`` from the artifact store as the task's
XCom. A step's user error (exit status 2: bad data, failed validation) fails the
task at once without retries; any other failure is retried by Airflow.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from mlpipe.cli import EXIT_USER_ERROR
from mlpipe.runs import Run
from mlpipe.ui.links import STEP_LINKS

if TYPE_CHECKING:
    from mlpipe.spec import Spec

RUNTIME_ENV = "MLPIPE_RUNTIME"
DEVICE_ENV = "MLPIPE_DEVICE"  # read by the train and tune steps (mlpipe.steps.train)
ERROR_MARK = "error: "


def step_command(step: str, run_uri: str, shard: int | None = None) -> list[str]:
    """The command line that runs ``step`` (or one shard of it) of the run at ``run_uri``."""
    command = [sys.executable, "-m", "mlpipe", "step", step, "--run", run_uri]
    return command if shard is None else [*command, "--shard", str(shard)]


def user_error(lines: list[str]) -> str:
    """The CLI's user-error message (from the ``mlpipe step: error:`` line to the end of the output)."""
    for index, line in enumerate(lines):
        if line.startswith("mlpipe step: " + ERROR_MARK):
            return "\n".join([line.removeprefix("mlpipe step: " + ERROR_MARK), *lines[index + 1 :]])
    return "\n".join(lines[-5:])


class LocalStepOperator(BaseOperator):
    """Run one mlpipe step as a subprocess of the worker and return its result as XCom."""

    template_fields = ("run_uri",)
    ui_color = "#e8f4fd"
    operator_extra_links = STEP_LINKS  # MLflow run, reports, model version: read off the result (XCom)

    def __init__(self, *, step: str, run_uri: str, shard: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.run_uri = run_uri
        self.shard = shard
        self._process: subprocess.Popen[str] | None = None

    @classmethod
    def step_kwargs(cls, pipeline: Spec, step: str) -> dict[str, Any]:
        """Arguments this runtime needs for ``step`` beyond the step and run: none, it runs where it is."""
        return {}

    def execute(self, context: Any) -> dict[str, Any]:
        command = step_command(self.step, self.run_uri, self.shard)
        self.log.info("running %s", " ".join(command))
        started = time.perf_counter()
        env = {**os.environ, **({DEVICE_ENV: "cpu"} if context["params"].get("force_cpu") else {})}
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True, start_new_session=True, env=env)
        tail: collections.deque[str] = collections.deque(maxlen=200)
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.log.info("%s", line.rstrip())
            tail.append(line.rstrip())
        code = self._process.wait()
        elapsed = round(time.perf_counter() - started, 3)
        if code == EXIT_USER_ERROR:
            raise AirflowFailException(f"step {self.step} refused its input:\n{user_error(list(tail))}")
        if code != 0:
            raise AirflowException(f"step {self.step} failed with exit status {code}")
        return {**Run(self.run_uri).result(self.step, self.shard), "process_seconds": elapsed}

    def on_kill(self) -> None:
        if self._process and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)


RUNTIMES = ("local", "kubernetes")


def step_operator_class(runtime: str | None = None) -> type[BaseOperator]:
    """The operator class of the configured runtime (``$MLPIPE_RUNTIME``, default ``local``)."""
    name = runtime or os.environ.get(RUNTIME_ENV, "local")
    if name not in RUNTIMES:
        raise ValueError(f"{RUNTIME_ENV}={name!r} is not a runtime; choose one of: {', '.join(RUNTIMES)}")
    if name == "kubernetes":
        from mlpipe.orchestration.kubernetes import KubernetesStepOperator

        return KubernetesStepOperator
    return LocalStepOperator
