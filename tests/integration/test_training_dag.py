"""The training DAG run for real through Airflow (`airflow dags test`), good data and bad.

Each run gets its own artifact store and MLflow database; the Airflow metadata
database is migrated once per session.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlpipe.core import uris
from mlpipe.core.results import Analyze, Deploy, Ingest, Register, Score, Train, Tune
from mlpipe.registry.tracking import NOTES_TAG
from mlpipe.store import runs, storage
from mlpipe.summary import summarize
from tests.conftest import DATA_PATH, airflow_env
from tests.planted_secrets import SECRETS, files_under, hits

pytestmark = pytest.mark.integration
DAG_ID = "loan_default_training"


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow")
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=airflow_env(home),
                   check=True, capture_output=True, timeout=300)
    return home


@pytest.fixture
def dag_run(airflow_home, pipeline_env, tmp_path):
    """Run the training DAG with trigger options (and ``env`` on top of the pipeline's); returns
    (exit code, log text, run URI)."""
    def run(dag_id: str = DAG_ID, kind: str = runs.TRAINING, env: dict[str, str] | None = None,
            **conf) -> tuple[int, str, str]:
        out = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", dag_id, "-c", json.dumps(conf)],
            env=airflow_env(airflow_home, **{**pipeline_env, **(env or {})}), capture_output=True, text=True,
            timeout=900)
        log = out.stdout + out.stderr
        (tmp_path / f"{dag_id}.log").write_text(log)
        return out.returncode, log, runs.latest("loan_default", pipeline_env["MLPIPE_STORE"], kind)

    return run


def registered_versions() -> list:
    from mlflow import MlflowClient

    return MlflowClient().search_model_versions("name='loan_default'")


def test_training_then_scoring_end_to_end(dag_run, airflow_home, pipeline_env, tmp_path):
    """Both DAGs run with every secret planted in their environment: none of them reaches a task log,
    an XCom or a rendered field (the Airflow database), the store, MLflow's database or artifacts."""
    from mlflow import MlflowClient

    code, log, run_uri = dag_run(notes="integration test", env=SECRETS)
    assert code == 0, log[-5000:]
    run = runs.Run(run_uri)
    registered = run.result(Register)
    analysis = run.result(Analyze).metrics
    assert registered.version == 1
    client = MlflowClient()
    champion = client.get_model_version_by_alias("loan_default", "champion")
    challenger = client.get_model_version_by_alias("loan_default", "challenger")
    assert int(champion.version) == int(challenger.version) == registered.version
    assert champion.tags["mlpipe.data_version"] == run.result(Ingest).data_version
    mlflow_run = client.get_run(run.result(Train).mlflow_run_id)
    assert mlflow_run.data.metrics["analysis_roc_auc"] == pytest.approx(analysis["roc_auc"])
    assert analysis["roc_auc"] >= run.spec.thresholds.min_roc_auc  # promoted: passed the spec's bar
    assert analysis["roc_auc"] - analysis["baseline_roc_auc"] >= run.spec.thresholds.min_lift_over_baseline
    assert run.options == {"data_uri": "", "force_promote": False, "notes": "integration test",
                           "skip_tuning": False, "tuning_trials": 0, "force_cpu": False}
    tuned = run.result(Tune)
    assert sum(tuned.trials.values()) == run.spec.tuning.trials  # the mapped workers shared the budget
    trained_with = client.get_run(run.result(Train).mlflow_run_id).data.params
    assert {k: trained_with[k] for k in tuned.best_params} == {k: str(v) for k, v in tuned.best_params.items()}
    assert run.result(Deploy).skipped
    summary = summarize(run_uri)
    assert f"tuning:       best {tuned.objective} {tuned.best_value:.4f}" in summary
    assert f"analysis:     ROC AUC {analysis['roc_auc']:.4f}" in summary
    assert "deploy:       skipped: $MLPIPE_SERVER_URL is not set" in summary
    assert mlflow_run.data.tags[NOTES_TAG] == champion.tags[NOTES_TAG] == "integration test"

    # The champion now scores a batch through the scoring DAG.
    batch = tmp_path / "batch.csv"
    pd.read_csv(DATA_PATH).drop(columns=["Class"]).head(1000).to_csv(batch, index=False)
    code, scoring_log, scoring_uri = dag_run("loan_default_scoring", runs.SCORING, env=SECRETS, input_uri=str(batch))
    assert code == 0, scoring_log[-5000:]
    scored = runs.Run(scoring_uri).result(Score)
    assert (scored.rows, scored.model_version, scored.source) == (1000, 1, batch.as_uri())
    predictions = pd.concat(pd.read_parquet(uris.local_path(uris.join(scored.predictions, name)))
                            for name in storage.children(scored.predictions))
    assert len(predictions) == 1000 and predictions["model_version"].eq(1).all()

    files = files_under(airflow_home, *(uris.local_path(pipeline_env[name])
                                        for name in ("MLPIPE_STORE", "MLPIPE_MLFLOW_ARTIFACTS")),
                        Path(pipeline_env["MLFLOW_TRACKING_URI"].removeprefix("sqlite:///")))
    assert {"airflow.db", "mlflow.db"} <= {path.name for path in files} and len(files) > 50
    assert "step train finished in" in log  # `dags test` prints the task logs
    assert hits(SECRETS.values(), files, training_output=log, scoring_output=scoring_log) == []


def _write(tmp_path, frame: pd.DataFrame, name: str = "loans.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path.as_uri()


def _shifted(loans: pd.DataFrame) -> pd.DataFrame:
    bad = loans[loans["Class"] == "bad"]
    good = loans[loans["Class"] == "good"].sample(len(bad) * 7 // 3, random_state=0)
    return pd.concat([bad, good]).sample(frac=1, random_state=0)  # 30% bad instead of 5%


def _wrong_type(loans: pd.DataFrame) -> pd.DataFrame:
    frame = loans.copy()
    frame["annual_inc"] = frame["annual_inc"].astype(str) + " USD"
    return frame


@pytest.mark.parametrize(
    ("make_input", "failed_task", "message"),
    [
        (lambda tmp, loans: (tmp / "missing.csv").as_uri(), "ingest_data", "missing.csv: no such file"),
        (lambda tmp, loans: _write(tmp, loans.drop(columns=["Class"])), "ingest_data",
         "target.column: 'Class' is not a column of file://"),
        (lambda tmp, loans: _write(tmp, loans.head(0)), "ingest_data", "has a header but no rows"),
        (lambda tmp, loans: (tmp / "empty.csv").write_text("") or (tmp / "empty.csv").as_uri(),
         "ingest_data", "the file is empty"),
        (lambda tmp, loans: _write(tmp, _wrong_type(loans)), "validate_data", "annual_inc"),
        (lambda tmp, loans: _write(tmp, _shifted(loans)), "validate_data", "Class"),
    ],
    ids=["missing-file", "missing-target", "no-rows", "empty-file", "wrong-type", "label-shift"],
)
def test_bad_input_stops_before_training(dag_run, tmp_path, loans, make_input, failed_task, message):
    code, log, run_uri = dag_run(data_uri=make_input(tmp_path, loans))
    assert code != 0
    assert message in log
    run = runs.Run(run_uri)
    assert not storage.exists(run.path(failed_task.split("_")[0], "result.json"))
    for later in ("split", "train", "register"):
        assert not storage.exists(run.path(later)), f"{later} ran after {failed_task} failed"
    assert registered_versions() == []
