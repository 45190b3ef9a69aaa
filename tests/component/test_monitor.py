"""monitor: a real champion, real scoring runs and captured requests, drift planted on purpose.

The module trains one champion (fast settings) on the bundled loans with a ``loan_id`` added, so
late outcomes can be joined by id. Each test scores its own batches into a fresh artifact store
(the champion's reference stays where training wrote it) and runs the real monitor step.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlpipe import cli
from mlpipe.core import uris
from mlpipe.core.errors import Refused
from mlpipe.serving.capture import Capture
from mlpipe.steps import run_step
from mlpipe.steps.monitor import LAST_MONITORING_TAG, NOTHING
from mlpipe.store import runs, storage
from mlpipe.store.runs import Run, captured_folder
from tests.conftest import DATA_PATH
from tests.fixtures.analysis import TRAINED, run_steps, start

ROWS = 3000


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    frame = pd.read_csv(DATA_PATH)
    frame.insert(0, "loan_id", [f"L{n:05d}" for n in range(len(frame))])
    return frame


@pytest.fixture(scope="module")
def champion(module_env, loans, tmp_path_factory) -> str:
    """A trained, registered champion whose spec has ids and a feedback source."""
    data = tmp_path_factory.mktemp("data")
    loans.to_csv(data / "loans.csv", index=False)
    uri = start("champion", **{"data.source": (data / "loans.csv").as_uri(), "id_columns": ["loan_id"],
                               "tuning.enabled": False,
                               "monitoring.feedback.source": (data / "outcomes").as_uri(),
                               "monitoring.feedback.min_labels": 300})
    run_steps(uri, TRAINED)
    storage.write_json(uris.join(uri, runs.OPTIONS), {"force_promote": True})
    assert run_step("register", uri)["promoted"]
    return uri


@pytest.fixture
def store(champion, tmp_path, monkeypatch) -> str:
    """A fresh artifact store for this test's scoring and monitoring runs."""
    uri = uris.normalize(tmp_path / "store")
    monkeypatch.setenv("MLPIPE_STORE", uri)
    storage.remove_tree(outcomes_folder(champion))
    return uri


def outcomes_folder(champion: str) -> str:
    return Run(champion).spec.monitoring.feedback.source


def resample(loans: pd.DataFrame, seed: int, rows: int = ROWS) -> pd.DataFrame:
    """Rows drawn with replacement, each a new loan with its own id (scoring refuses repeated ids)."""
    drawn = loans.iloc[np.random.default_rng(seed).integers(0, len(loans), rows)].reset_index(drop=True)
    return drawn.assign(loan_id=[f"S{seed}-{n:05d}" for n in range(rows)])


def score(champion: str, tmp_path, frame: pd.DataFrame, run_id: str) -> dict:
    path = tmp_path / f"{run_id}.csv"
    frame.drop(columns=["Class"]).to_csv(path, index=False)
    uri = runs.start(Run(champion).spec, run_id, options={"input_uri": path.as_uri()}, kind=runs.SCORING)
    return run_step("score", uri)


def monitor(champion: str, run_id: str = "monitoring") -> tuple[dict, dict]:
    uri = runs.start(Run(champion).spec, run_id, kind=runs.MONITORING)
    result = run_step("monitor", uri)
    return result, storage.read_json(result["report"])


def test_nothing_scored_yet_is_nothing_to_compare(champion, store):
    result, report = monitor(champion)
    assert (result["status"], result["breach"], result["retrain_notes"]) == (NOTHING, False, "")
    assert result["message"].startswith("0 rows scored between ") and "at least 500 are needed" in result["message"]
    assert report["features"] == {} and report["mlflow_run_id"] is None
    assert "0 rows scored" in storage.read_bytes(result["report_html"]).decode()


def test_unshifted_batches_do_not_drift(champion, store, loans, tmp_path):
    from mlflow import MlflowClient

    score(champion, tmp_path, resample(loans, 1), "day1")
    score(champion, tmp_path, resample(loans, 2), "day2")
    result, report = monitor(champion)
    assert (result["status"], result["breach"], result["drifting_features"]) == ("ok", False, [])
    assert report["rows"] == {"total": 2 * ROWS, "batch": 2 * ROWS, "served": 0}
    assert [source["rows"] for source in report["sources"]] == [ROWS, ROWS]
    assert report["score"] is not None and not report["score"]["drifting"]
    assert sorted(report["features"]) == sorted(Run(champion).spec.feature_columns(list(loans.columns)))
    client = MlflowClient()
    logged = client.get_run(result["mlflow_run_id"])
    assert logged.data.metrics["psi/int_rate"] == pytest.approx(report["features"]["int_rate"]["psi"])
    assert logged.data.metrics["breach"] == 0.0 and logged.data.tags["mlpipe.model_version"] == "1"
    tag = json.loads(client.get_model_version("loan_default", "1").tags[LAST_MONITORING_TAG])
    assert (tag["status"], tag["mlflow_run_id"]) == ("ok", result["mlflow_run_id"])


def test_a_shift_of_one_feature_flags_that_feature_only(champion, store, loans, tmp_path):
    shifted = resample(loans, 3)
    moved = np.random.default_rng(3).random(len(shifted)) < 0.2
    shifted.loc[moved, "int_rate"] += loans["int_rate"].std()
    score(champion, tmp_path, shifted, "shifted")
    result, report = monitor(champion)
    assert result["drifting_features"] == ["int_rate"]
    assert any(reason.startswith("KS ") for reason in report["features"]["int_rate"]["why"])


def test_a_large_shift_is_a_breach_with_the_reason(champion, store, loans, tmp_path, capsys):
    shifted = resample(loans, 4)
    shifted["int_rate"] += 2 * loans["int_rate"].std()
    score(champion, tmp_path, shifted, "shifted")
    result, report = monitor(champion)
    assert result["breach"] and report["status"] == "breach"
    assert any(reason.startswith("int_rate: PSI ") and "major_psi 0.25" in reason for reason in result["reasons"])
    assert "int_rate" in result["retrain_notes"] and "loan_default v1" in result["retrain_notes"]
    html = storage.read_bytes(result["report_html"]).decode()
    assert "int_rate" in html and "major_psi" in html
    assert cli.main(["summary", "--latest", "loan_default", "--kind", "monitoring"]) == 0
    text = capsys.readouterr().out
    assert f"  monitoring: breach: {result['message']}" in text and f"report {result['report_html']}" in text
    assert f"{ROWS:,} rows ({ROWS:,} batch, 0 served) vs champion version 1" in text


def test_a_changed_category_mix_is_a_breach(champion, store, loans, tmp_path):
    mixed = resample(loans, 5)
    mixed.loc[: len(mixed) // 2, "term"] = " 60 months"
    score(champion, tmp_path, mixed, "mixed")
    result, report = monitor(champion)
    assert "term" in result["drifting_features"] and result["breach"]
    assert report["features"]["term"]["kind"] == "categorical"
    assert any(reason.startswith("term: PSI") for reason in result["reasons"])


def test_served_requests_count_as_current_data(champion, store, loans, tmp_path):
    from mlflow import MlflowClient

    columns = [c for c in loans.columns if c not in ("loan_id", "Class")]
    records = resample(loans, 6, 600)[columns]
    capture = Capture(captured_folder("loan_default"), fraction=1.0)
    version = MlflowClient().get_model_version_by_alias("loan_default", "champion").version
    for record in json.loads(records.to_json(orient="records")):
        capture.add([{"time": pd.Timestamp.now(tz="UTC").isoformat(), "endpoint": "predict", "request_id": "r",
                      "index": 0, "model": {"name": "loan_default", "version": int(version), "alias": "champion"},
                      "record": record, "score": 0.05, "decision": False}])
    capture.flush()
    result, report = monitor(champion)
    assert report["rows"] == {"total": 600, "batch": 0, "served": 600}
    assert result["status"] == "breach" and report["score"]["drifting"]  # every served score is 0.05


def write_outcomes(champion: str, frame: pd.DataFrame) -> None:
    path = uris.local_path(outcomes_folder(champion))
    path.mkdir(parents=True, exist_ok=True)
    frame[["loan_id", "Class"]].to_csv(path / "outcomes.csv", index=False)


def test_feedback_quality_and_a_flipped_label_rate(champion, store, loans, tmp_path):
    batch = loans.sample(n=4000, random_state=7).reset_index(drop=True)
    score(champion, tmp_path, batch, "scored")
    write_outcomes(champion, batch)
    result, report = monitor(champion, "honest")
    quality = report["quality"]
    assert quality["status"] == "ok" and quality["labels"] == 4000 and not quality["breach"]
    assert quality["overall"]["roc_auc"] > 0.65
    flipped = batch.assign(Class=batch["Class"].map({"good": "bad", "bad": "good"}))
    write_outcomes(champion, flipped)
    result, report = monitor(champion, "flipped")
    assert report["quality"]["breach"] and report["quality"]["overall"]["roc_auc"] < 0.4
    assert result["breach"] and any(reason.startswith("quality: ROC AUC") for reason in result["reasons"])


def test_too_few_outcomes_are_not_judged(champion, store, loans, tmp_path):
    batch = resample(loans, 8)
    score(champion, tmp_path, batch, "scored")
    write_outcomes(champion, batch.head(100))
    _, report = monitor(champion)
    assert report["quality"]["status"] == "not_enough_labels" and not report["quality"]["breach"]


def test_feedback_without_the_target_names_the_columns(champion, store, loans, tmp_path):
    score(champion, tmp_path, resample(loans, 9), "scored")
    path = uris.local_path(outcomes_folder(champion))
    path.mkdir(parents=True, exist_ok=True)
    loans[["loan_id"]].to_csv(path / "outcomes.csv", index=False)
    with pytest.raises(Refused, match=r"outcomes.csv: the feedback lacks the columns \['Class'\]"):
        monitor(champion)
