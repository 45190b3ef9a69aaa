"""Orchestration benchmarks, each against a baseline measured in the same run.

- DAG folder parse time vs. a one-task DAG file parsed the same way (fresh interpreters).
- One real training DAG run (`airflow dags test`): the run's wall time vs. the sum of its
  steps' process times and of their in-function compute times. The difference is what
  Airflow and the runtime add (task start-up, state updates, XCom, subprocess start).

Run with `make bench` (it sets up the embedded Airflow/MLflow environment first).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARSE = """
import sys, time
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
assert bag.dags and not bag.import_errors, bag.import_errors
print(time.perf_counter() - started)
"""
TRIVIAL_DAG = '''"""A one-task Airflow DAG: the parse-time baseline."""
from datetime import datetime, timezone
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator
with DAG("trivial", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc)):
    EmptyOperator(task_id="nothing")
'''


def parse_seconds(folder: Path, repeats: int = 5) -> float:
    """Median time to fill a DagBag from ``folder`` in a fresh interpreter (imports excluded)."""
    times = [float(subprocess.run([sys.executable, "-c", PARSE, str(folder)], check=True, text=True,
                                  capture_output=True).stdout.split()[-1]) for _ in range(repeats)]
    return statistics.median(times)


def bench_parse() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "trivial.py").write_text(TRIVIAL_DAG)
        baseline = parse_seconds(Path(folder))
    ours = parse_seconds(ROOT / "dags")
    return {"dags_folder_s": ours, "one_task_dag_s": baseline, "ratio": ours / baseline}


def _decoded(value: object) -> object:
    """An XCom value as stored by Airflow (JSON text or already decoded)."""
    import json

    try:
        return json.loads(value) if isinstance(value, str | bytes) else value
    except json.JSONDecodeError:
        return value


def _run_times(dag_id: str) -> tuple[float, dict[str, float], dict[str, dict]]:
    """The latest run of ``dag_id``: its wall seconds, task durations and XCom results."""
    from airflow.models import DagRun, TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.start_date.desc()).first()
        tasks = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id,
                                                   TaskInstance.run_id == run.run_id).all()
        xcoms = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == run.run_id,
                                                XComModel.key == "return_value").all()
        wall = (run.end_date - run.start_date).total_seconds()
        durations = {ti.task_id: ti.duration for ti in tasks}
        results = {x.task_id if x.map_index < 0 else f"{x.task_id}[{x.map_index}]": _decoded(x.value)
                   for x in xcoms}
    return wall, durations, results


def bench_dag_run(dag_id: str = "loan_default_training") -> dict[str, float]:
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", dag_id], capture_output=True, text=True,
                         env=os.environ)
    if out.returncode != 0:
        log = out.stdout + out.stderr
        sys.exit(f"airflow dags test {dag_id} exited {out.returncode}; its log ends:\n{log[-3000:]}")
    command_wall = time.perf_counter() - started
    wall, durations, results = _run_times(dag_id)
    steps = {task: r for task, r in results.items() if isinstance(r, dict) and "process_seconds" in r}
    process = sum(r["process_seconds"] for r in steps.values())
    compute = sum(r["seconds"] for r in steps.values())
    return {
        "airflow_dags_test_command_s": command_wall,
        "dag_run_wall_s": wall,
        "sum_task_durations_s": sum(durations.values()),
        "sum_step_process_s": process,
        "sum_step_compute_s": compute,
        "orchestration_overhead_share": (wall - process) / wall,
        "overhead_incl_step_imports_share": (wall - compute) / wall,
        **{f"step_{task}_process_s": r["process_seconds"] for task, r in steps.items()},
        **{f"step_{task}_compute_s": r["seconds"] for task, r in steps.items()},
    }


def report(title: str, figures: dict[str, float]) -> None:
    print(f"\n{title}")
    for name, value in figures.items():
        print(f"  {name:<40} {value:10.3f}")


if __name__ == "__main__":
    report("DAG folder parse time (median of 5 fresh interpreters)", bench_parse())
    report("Training DAG run through Airflow", bench_dag_run())
