"""The contract between a runtime and the step it runs: the command line, and how a refused step reads.

Every runtime runs ``python -m mlpipe step <step> --run <run uri>`` (:func:`step_command`) and reads
the exit status (:mod:`mlpipe.core.errors`): refused input fails the task at once with the CLI's
message (:func:`user_error`); any other failure is retried by Airflow.
"""

from __future__ import annotations

import sys

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
