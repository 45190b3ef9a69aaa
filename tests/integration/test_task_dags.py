"""A regression and a multiclass pipeline through Airflow (`airflow dags test`): each spec's training DAG registers a
champion (promoted with the force_promote option: on these small, nearly linear sets the linear baseline is as
good), its scoring DAG scores a batch with it, and its monitoring DAG compares that batch with the reference.

The DAGs folder is this test's own: the project's DAG files and a pipelines folder holding only the two task
specs (tests/data/tasks) with their data and reference profiles.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlpipe.core import uris
from mlpipe.core.results import Analyze, Deploy, Monitor, Register, Score, Train, Tune
from mlpipe.core.tasks import RULES, Task
from mlpipe.data import datasets
from mlpipe.model.tabular import TabularModel
from mlpipe.store import runs, storage
from mlpipe.summary import summarize
from tests.conftest import ROOT, airflow_env
from tests.fixtures.tasks import TASK_SPECS, task_spec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def airflow_setup(tmp_path_factory):
    """An Airflow home (migrated) and a DAGs folder with the project's DAG files and the task specs only."""
    home, dags = tmp_path_factory.mktemp("airflow"), tmp_path_factory.mktemp("dags")
    for dag_file in (ROOT / "dags").glob("*.py"):
        shutil.copy(dag_file, dags)
    (dags / "pipelines").mkdir()
    for task in TASK_SPECS:
        task_spec(dags / "pipelines", task)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=airflow_env(home),
                   check=True, capture_output=True, timeout=300)
    return home, dags


def dag_test(airflow_setup, pipeline_env, dag_id: str, **conf) -> str:
    """Run ``dag_id`` with ``conf``; its log (the test fails, showing it, when the run fails)."""
    home, dags = airflow_setup
    out = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", dag_id, "-c", json.dumps(conf)],
                         env=airflow_env(home, dags, **pipeline_env), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    return out.stdout + out.stderr


@pytest.mark.parametrize("task", [Task.REGRESSION, Task.MULTICLASS])
def test_training_then_scoring_through_airflow(airflow_setup, pipeline_env, tmp_path, task):
    name = TASK_SPECS[task]
    dag_test(airflow_setup, pipeline_env, f"{name}_training", force_promote=True, notes="task DAG test")
    run = runs.Run(runs.latest(name, pipeline_env["MLPIPE_STORE"]))
    registered, metrics = run.result(Register), run.result(Analyze).metrics
    assert registered.promoted and registered.champion_version == registered.version == 1
    assert run.result(Tune).skipped and "rows" in run.result(Tune).reason  # too few rows to tune: auto skips
    assert run.result(Deploy).skipped == "$MLPIPE_SERVER_URL is not set: no model server to deploy to"
    champion = MlflowClient().get_model_version_by_alias(name, "champion")
    assert float(champion.tags[f"mlpipe.analysis_{RULES[task].headline}"]) == metrics[RULES[task].headline]
    assert f"analysis:     {RULES[task].label} {metrics[RULES[task].headline]:.4f}" in summarize(run.uri)

    source = uris.local_path(run.spec.data.source)
    batch = tmp_path / "batch.csv"
    rows = pd.read_csv(source).drop(columns=[run.spec.target.column])
    rows.to_csv(batch, index=False)
    dag_test(airflow_setup, pipeline_env, f"{name}_scoring", input_uri=str(batch))
    scored = runs.Run(runs.latest(name, pipeline_env["MLPIPE_STORE"], runs.SCORING)).result(Score)
    predictions = datasets.read(scored.predictions)
    model = TabularModel.load(run.result(Train).model_folder)
    expected = model.scores(rows)
    assert (scored.rows, scored.model_version, scored.threshold) == (len(rows), 1, None)
    if task == Task.REGRESSION:
        assert np.allclose(predictions["score"], expected, atol=1e-5)
    else:
        probabilities = predictions[model.class_columns()]
        assert probabilities.shape == (len(rows), 3) and np.allclose(probabilities, expected, atol=1e-6)

    dag_test(airflow_setup, pipeline_env, f"{name}_monitoring")
    monitored = runs.Run(runs.latest(name, pipeline_env["MLPIPE_STORE"], runs.MONITORING)).result(Monitor)
    assert monitored.status in ("ok", "breach") and monitored.rows["batch"] == len(rows)
    outputs = storage.read_json(monitored.report)["outputs"]
    assert sorted(outputs) == sorted(model.class_columns() if task == Task.MULTICLASS else ["score"])
