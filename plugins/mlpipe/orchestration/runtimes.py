"""Runtimes: how a DAG task runs a step. One setting, ``$MLPIPE_RUNTIME``, picks one.

- ``local`` (default): the step CLI in a subprocess of the Airflow worker
  (``airflow dags test``, LocalExecutor, the Celery workers of docker-compose);
- ``kubernetes``: a pod per step on the step's node pool
  (:mod:`mlpipe.orchestration.kubernetes`, imported only when chosen).

Every runtime runs the same command, ``python -m mlpipe step <step> --run <run uri>``,
and hands back the step's ``result.json`` from the artifact store as the task's
XCom, and as the metadata of its outlet's asset event (:mod:`mlpipe.orchestration.assets`).
A step's user error (exit status 2: bad data, failed validation) fails the task at once
without retries; any other failure is retried by Airflow.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from mlpipe.core import settings
from mlpipe.core.errors import EXIT_REFUSED
from mlpipe.core.results import PROCESS_SECONDS
from mlpipe.orchestration.assets import record_step_event
from mlpipe.orchestration.links import STEP_LINKS
from mlpipe.orchestration.protocol import step_command, user_error
from mlpipe.store.runs import Run

if TYPE_CHECKING:
    from mlpipe.core.spec import Spec


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
        env = settings.environment(**({settings.DEVICE: "cpu"} if context["params"].get("force_cpu") else {}))
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         text=True, start_new_session=True, env=env)
        tail: collections.deque[str] = collections.deque(maxlen=200)
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.log.info("%s", line.rstrip())
            tail.append(line.rstrip())
        code = self._process.wait()
        elapsed = round(time.perf_counter() - started, 3)
        if code == EXIT_REFUSED:
            raise AirflowFailException(f"step {self.step} refused its input:\n{user_error(list(tail))}")
        if code != 0:
            raise AirflowException(f"step {self.step} failed with exit status {code}")
        result = {**Run(self.run_uri).result(self.step, self.shard), PROCESS_SECONDS: elapsed}
        record_step_event(context, self.step, result)  # the metadata of its outlet's event (scored batch, report)
        return result

    def on_kill(self) -> None:
        if self._process and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)


