"""A broken pipeline spec shows its own import error, naming its file and field, and hides no other spec's DAGs.

Specs side by side in a temporary dags folder: ``loan_default.yaml`` (the reference) and ``churn.yaml``, a
copy renamed ``churn`` and broken (no ``target.column``, a schedule or start date Airflow refuses, or the
name of another spec). Checked with real Airflow: in a ``DagBag`` (what the DAG processor parses) and in
the metadata database after a run of the real DAG processor (what the UI's Browse ▸ DAG import errors,
``airflow dags list-import-errors`` and the REST API show, and which DAGs the scheduler keeps: Airflow
marks every DAG of a file that has an import error stale).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest
import yaml

from tests.conftest import ROOT, SPEC_PATH, airflow_env
from tests.dags.test_dag_integrity import inspect

GOOD_DAGS = ["loan_default_monitoring", "loan_default_scoring", "loan_default_training"]
CHURN_DAGS = ["churn_monitoring", "churn_scoring", "churn_training"]
BROKEN = "churn.yaml: target.column: Field required"

# Runs in the Airflow environment: each DAG the database knows, and whether it is stale or has import errors.
DAG_STATES = """
import json
from sqlalchemy import select
from airflow.models.dag import DagModel
from airflow.utils.session import create_session

with create_session() as session:
    rows = session.execute(select(DagModel.dag_id, DagModel.is_stale, DagModel.has_import_errors)).all()
print(json.dumps({dag_id: {"stale": stale, "import_errors": errors} for dag_id, stale, errors in rows}))
"""


def _churn(break_it: Callable[[dict], object] | None = None, name: str = "churn") -> str:
    """The reference spec as pipeline ``name``, broken by ``break_it(document)`` when given."""
    document = yaml.safe_load(SPEC_PATH.read_text())
    document["name"] = name
    if break_it is not None:
        break_it(document)
    return yaml.safe_dump(document)


@pytest.fixture
def dags_folder(tmp_path):
    """The project's DAG files and reference spec, plus ``churn.yaml`` without its ``target.column``."""
    folder = tmp_path / "dags"
    pipelines = folder / "pipelines"
    pipelines.mkdir(parents=True)
    for dag_file in (ROOT / "dags").glob("*.py"):
        (folder / dag_file.name).write_text(dag_file.read_text())
    (pipelines / SPEC_PATH.name).write_text(SPEC_PATH.read_text())
    (pipelines / "churn.yaml").write_text(_churn(lambda document: document["target"].pop("column")))
    return folder


@pytest.mark.parametrize(("break_it", "message"), [
    (None, BROKEN),
    # values Airflow would refuse: the spec names their field
    (lambda document: document.update(schedule="every day"),
     "churn.yaml: schedule: 'every day' is neither a cron expression"),
    (lambda document: document.update(start_date="yesterday"),
     "churn.yaml: start_date: 'yesterday' is not an ISO date such as 2026-01-01"),
], ids=["missing-field", "bad-schedule", "bad-start-date"])
def test_the_dagbag_has_the_good_specs_dags_and_one_import_error_naming_the_broken_file(
        dags_folder, tmp_path, break_it, message):
    if break_it is not None:
        (dags_folder / "pipelines" / "churn.yaml").write_text(_churn(break_it))
    found = inspect(dags_folder, tmp_path / "home")
    assert sorted(found["dags"]) == GOOD_DAGS
    [(path, error)] = found["errors"].items()
    assert message in error
    assert "loan_default.yaml" not in error
    # The error is keyed to a file that holds none of the good DAGs, so Airflow leaves them active.
    assert path not in {dag["fileloc"] for dag in found["dags"].values()}


def test_two_specs_with_one_name_both_fail_and_hide_no_third(dags_folder, tmp_path):
    pipelines = dags_folder / "pipelines"
    (pipelines / "churn.yaml").write_text(_churn(name="loan_default"))
    (pipelines / "churn_eu.yaml").write_text(_churn(name="churn_eu"))
    found = inspect(dags_folder, tmp_path / "home")
    assert sorted(found["dags"]) == ["churn_eu_monitoring", "churn_eu_scoring", "churn_eu_training"]
    [error] = found["errors"].values()
    assert "churn.yaml: name: 'loan_default' is also the name of loan_default.yaml" in error
    assert "loan_default.yaml: name: 'loan_default' is also the name of churn.yaml" in error


def test_the_database_lists_one_import_error_and_keeps_the_good_dags_until_the_spec_is_fixed(dags_folder, tmp_path):
    env = airflow_env(tmp_path / "home", dags_folder)

    def airflow(*args: str, status: int = 0) -> str:
        out = subprocess.run([sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == status, f"airflow {' '.join(args)}:\n{(out.stdout + out.stderr)[-3000:]}"
        return out.stdout

    def import_errors(status: int = 0) -> list[dict]:
        """What `airflow dags list-import-errors` lists (it exits 1 when there are any)."""
        return json.loads(airflow("dags", "list-import-errors", "--output", "json", status=status).splitlines()[-1])

    def dag_states() -> dict:
        out = subprocess.run([sys.executable, "-c", DAG_STATES], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    (tmp_path / "home").mkdir()
    airflow("db", "migrate")
    airflow("dag-processor", "--num-runs", "1")
    [error] = import_errors(status=1)
    assert BROKEN in error["error"] and "loan_default.yaml" not in error["error"]
    states = dag_states()
    assert sorted(states) == GOOD_DAGS
    assert all(state == {"stale": False, "import_errors": False} for state in states.values()), states

    (dags_folder / "pipelines" / "churn.yaml").write_text(_churn())
    airflow("dag-processor", "--num-runs", "1")
    assert import_errors() == []
    states = dag_states()
    assert sorted(states) == sorted(GOOD_DAGS + CHURN_DAGS)
    assert all(state == {"stale": False, "import_errors": False} for state in states.values()), states
