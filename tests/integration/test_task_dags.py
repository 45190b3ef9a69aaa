"""The shipped regression and multiclass pipelines through Airflow (`airflow dags test`): loan_rate (the interest
rate a loan is priced at) and loan_verification (the income verification it gets), both on the bundled loans.
Each spec's training DAG registers a champion on its own merits (no force_promote: both models beat their linear
baselines on these loans), its scoring DAG scores a batch with it, and its monitoring DAG compares that batch with
the reference.

To keep CI time down the training runs are triggered with the ``skip_tuning`` option: the models train with their
specs' training.params, untuned (their lift over the baseline is still positive; tuning runs through Airflow in
tests/integration/test_training_dag.py).

The DAGs folder is this test's own: the project's DAG files and a pipelines folder holding only the two shipped
specs with their reference profiles and data (data.source is spec-relative: data/lending_club.csv).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlpipe.core import uris
from mlpipe.core.results import Analyze, Deploy, Monitor, Register, Score, Train, Tune
from mlpipe.core.tasks import RULES, Task, lift
from mlpipe.data import datasets
from mlpipe.data.pii import mask_pii
from mlpipe.model.tabular import TabularModel
from mlpipe.registry.names import FORCED_TAG, PROMOTED_TAG, REASONS_TAG
from mlpipe.registry.tracking import NOTES_TAG
from mlpipe.store import runs, storage
from mlpipe.summary import summarize
from tests.conftest import DATA_PATH, ROOT, airflow_env

pytestmark = pytest.mark.integration

SHIPPED = {Task.REGRESSION: "loan_rate", Task.MULTICLASS: "loan_verification"}
NOTES = "task DAG test"


def shipped_pipelines(dags: Path) -> Path:
    """``dags/pipelines`` holding only the shipped specs of :data:`SHIPPED`, their reference profiles and the
    loans under ``data/`` (where the specs' data.source points)."""
    pipelines = dags / "pipelines"
    (pipelines / "data").mkdir(parents=True)
    for name in SHIPPED.values():
        for suffix in (".yaml", ".profile.json"):
            shutil.copy(ROOT / "dags" / "pipelines" / f"{name}{suffix}", pipelines)
    shutil.copy(DATA_PATH, pipelines / "data")
    return pipelines


@pytest.fixture(scope="module")
def airflow_setup(tmp_path_factory):
    """An Airflow home (migrated) and a DAGs folder with the project's DAG files and the shipped task specs only."""
    home, dags = tmp_path_factory.mktemp("airflow"), tmp_path_factory.mktemp("dags")
    for dag_file in (ROOT / "dags").glob("*.py"):
        shutil.copy(dag_file, dags)
    shipped_pipelines(dags)
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
def test_shipped_spec_trains_scores_and_monitors_through_airflow(airflow_setup, pipeline_env, tmp_path, task):
    name, rules = SHIPPED[task], RULES[task]
    dag_test(airflow_setup, pipeline_env, f"{name}_training", skip_tuning=True, notes=NOTES)
    run = runs.Run(runs.latest(name, pipeline_env["MLPIPE_STORE"]))
    assert uris.local_path(run.spec.data.source).is_relative_to(airflow_setup[1])  # the copied spec's own data
    assert (run.options["skip_tuning"], run.options["force_promote"]) == (True, False)
    assert run.result(Tune).skipped and run.result(Tune).reason == "skip_tuning was set when the run was triggered"

    # Promoted on its merits: the spec's thresholds pass, the model beats its baseline.
    registered, metrics = run.result(Register), run.result(Analyze).metrics
    assert registered.promoted and not registered.forced
    assert registered.champion_version == registered.version == 1
    headline = metrics[rules.headline]
    assert metrics["lift"] > 0
    assert metrics["lift"] == pytest.approx(lift(task, headline, metrics[f"baseline_{rules.headline}"]), abs=1e-6)
    assert registered.reasons == [f"no champion yet and the spec thresholds pass "
                                  f"({rules.headline} {headline:.4f}, lift {metrics['lift']:.4f})"]
    assert run.result(Deploy).skipped == "$MLPIPE_SERVER_URL is not set: no model server to deploy to"

    champion = MlflowClient().get_model_version_by_alias(name, "champion")
    assert int(champion.version) == registered.version
    assert float(champion.tags[f"mlpipe.analysis_{rules.headline}"]) == headline
    assert (champion.tags[PROMOTED_TAG], champion.tags[FORCED_TAG]) == ("true", "false")
    assert champion.tags[REASONS_TAG] == registered.reasons[0]
    assert champion.tags[NOTES_TAG] == NOTES
    summary = summarize(run.uri)
    assert f"analysis:     {rules.label} {headline:.4f}" in summary
    assert f"lift {metrics['lift']:+.4f}" in summary
    assert "tuning:       skipped: skip_tuning was set when the run was triggered" in summary
    assert f"promoted to champion: {registered.reasons[0]}" in summary

    # The champion scores a batch (the loans without their target) through the scoring DAG ...
    rows = pd.read_csv(uris.local_path(run.spec.data.source)).drop(columns=[run.spec.target.column])
    assert len(rows) >= run.spec.monitoring.min_rows  # enough for the monitor to compare
    batch = tmp_path / "batch.csv"
    rows.to_csv(batch, index=False)
    dag_test(airflow_setup, pipeline_env, f"{name}_scoring", input_uri=str(batch))
    scored = runs.Run(runs.latest(name, pipeline_env["MLPIPE_STORE"], runs.SCORING)).result(Score)
    predictions = datasets.read(scored.predictions)
    model = TabularModel.load(run.result(Train).model_folder)
    masked = rows.copy()
    mask_pii(masked, run.spec.pii)  # addr_state hashed with pipeline_env's $MLPIPE_PII_KEY, as the DAG's was
    expected = model.scores(masked)
    assert (scored.rows, scored.model_version, scored.threshold) == (len(rows), 1, None)
    assert datasets.read(scored.inputs)["addr_state"].tolist() == masked["addr_state"].tolist()
    if task == Task.REGRESSION:
        assert np.allclose(predictions["score"], expected, atol=1e-5)
    else:
        probabilities = predictions[model.class_columns()]
        assert probabilities.shape == (len(rows), 3) and np.allclose(probabilities, expected, atol=1e-6)

    # ... and the monitoring DAG compares that batch with the champion's reference.
    dag_test(airflow_setup, pipeline_env, f"{name}_monitoring")
    monitored = runs.Run(runs.latest(name, pipeline_env["MLPIPE_STORE"], runs.MONITORING)).result(Monitor)
    assert monitored.rows["batch"] == len(rows)
    # the batch is the loans the reference was sampled from: compared (>= min_rows), and nothing drifts
    assert (monitored.status, monitored.breach, monitored.drifting_features) == ("ok", False, []), monitored.reasons
    assert monitored.champion_version == registered.version
    outputs = storage.read_json(monitored.report)["outputs"]
    assert sorted(outputs) == sorted(model.class_columns() if task == Task.MULTICLASS else ["score"])
