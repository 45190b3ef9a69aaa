"""monitor for regression and multiclass champions: quality from late outcomes by the task's metrics, the breach
rules of each task, and drift of what the model server answered.

The module trains each task's champion once (the bundled diabetes and wine sets, :mod:`tests.fixtures.tasks`) with
a feedback source; each test scores and serves into a fresh artifact store and runs the real monitor step.
"""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn import metrics as skm

from mlpipe.core import spec, uris
from mlpipe.core.errors import Refused
from mlpipe.core.results import Analyze, Monitor, Score, Train
from mlpipe.core.tasks import RULES, Task
from mlpipe.data import datasets
from mlpipe.model import reference
from mlpipe.model.tabular import TabularModel
from mlpipe.monitoring.drift import numeric_drift
from mlpipe.serving.app import create_app
from mlpipe.serving.capture import Capture
from mlpipe.steps import run_step
from mlpipe.store import runs, storage
from mlpipe.store.runs import Run, captured_folder
from tests.fixtures.analysis import clone, run_steps
from tests.fixtures.tasks import TRAINED

TASKS = [Task.REGRESSION, Task.MULTICLASS]
MIN_LABELS = 50
MAXIMUM = {Task.MULTICLASS: "max_log_loss", Task.REGRESSION: "max_rmse"}
TITLES = {Task.MULTICLASS: ("Log loss", "Accuracy"), Task.REGRESSION: ("RMSE", "MAE", "Mean error (bias)")}


@pytest.fixture(scope="module", name="champions")
def champions_fixture(task_runs, tmp_path_factory) -> dict[Task, str]:
    """Each task's trained run, cloned with a feedback source (a folder per task) and a gate any sane model passes,
    analyzed and registered as its model's champion (task -> run)."""
    outcomes = tmp_path_factory.mktemp("outcomes")
    return {task: run_steps(clone(task_runs[task], f"{task}_champion", TRAINED, **{
        "thresholds.min_lift_over_baseline": -1e9, "monitoring.feedback.source": (outcomes / task).as_uri(),
        "monitoring.feedback.min_labels": MIN_LABELS}), ("analyze", "register")) for task in TASKS}


@pytest.fixture
def store(champions, tmp_path, monkeypatch) -> str:
    """A fresh artifact store for this test's scoring runs, captured requests and monitoring runs; no outcomes."""
    uri = uris.normalize(tmp_path / "store")
    monkeypatch.setenv("MLPIPE_STORE", uri)
    for champion in champions.values():
        storage.remove_tree(Run(champion).spec.monitoring.feedback.source)
    return uri


def cases(champion: str) -> pd.DataFrame:
    """The task's whole data set: each row a case with its id and, later, its outcome."""
    return pd.read_csv(uris.local_path(Run(champion).spec.data.source))


def score(champion: str, frame: pd.DataFrame, tmp_path) -> Score:
    path = tmp_path / "batch.csv"
    frame.drop(columns=[Run(champion).spec.target.column]).to_csv(path, index=False)
    uri = runs.start(Run(champion).spec, "scored", options={"input_uri": path.as_uri()}, kind=runs.SCORING)
    return Score.model_validate(run_step("score", uri))


def write_outcomes(champion: str, frame: pd.DataFrame) -> None:
    pipeline = Run(champion).spec
    path = uris.local_path(pipeline.monitoring.feedback.source)
    path.mkdir(parents=True, exist_ok=True)
    frame[[*pipeline.id_columns, pipeline.target.column]].to_csv(path / "outcomes.csv", index=False)


def shuffled(champion: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The same cases with their outcomes dealt to other cases (the model no longer predicts them)."""
    column = Run(champion).spec.target.column
    return frame.assign(**{column: np.random.default_rng(11).permutation(frame[column].to_numpy())})


def monitor(champion: str, **overrides) -> tuple[Monitor, dict]:
    pipeline = spec.with_overrides(Run(champion).spec, overrides) if overrides else Run(champion).spec
    result = Monitor.model_validate(run_step("monitor", runs.start(pipeline, "monitoring", kind=runs.MONITORING)))
    return result, storage.read_json(result.report)


def model(champion: str) -> TabularModel:
    return TabularModel.load(Run(champion).result(Train).model_folder)


def expected_quality(champion: str, scored: Score, frame: pd.DataFrame) -> dict[str, float]:
    """The task's metrics of the champion's batch predictions joined by id with the outcomes, by scikit-learn."""
    pipeline, task = Run(champion).spec, Run(champion).spec.target.task
    joined = datasets.read(scored.predictions).merge(frame, on=pipeline.id_columns)
    actual = joined[pipeline.target.column]
    if task == Task.MULTICLASS:
        classes = model(champion).schema["classes"]
        probabilities = joined[model(champion).class_columns()].to_numpy(float)
        probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)  # float32: sums within 1e-7 of 1
        y = actual.map(classes.index).to_numpy()
        return {"rows": len(joined), "log_loss": skm.log_loss(y, probabilities, labels=range(len(classes))),
                "accuracy": skm.accuracy_score(y, probabilities.argmax(axis=1))}
    predicted = joined["score"].to_numpy(float)
    return {"rows": len(joined), "mean_actual": actual.mean(), "mean_predicted": predicted.mean(),
            "rmse": skm.root_mean_squared_error(actual, predicted), "mae": skm.mean_absolute_error(actual, predicted),
            "mean_error": (predicted - actual).mean()}


@pytest.mark.parametrize("task", TASKS)
def test_quality_from_outcomes_is_the_tasks_metrics_on_the_joined_rows(champions, store, task, tmp_path):
    champion, rules = champions[task], RULES[task]
    frame = cases(champion)
    scored = score(champion, frame, tmp_path)
    write_outcomes(champion, frame.sample(frac=1, random_state=3))  # in another order: joined by id
    result, report = monitor(champion)
    quality, expected = report["quality"], expected_quality(champion, scored, frame)
    assert report["task"] == task and quality["labels"] == len(frame) == expected["rows"]
    assert quality["overall"] == pytest.approx(expected, abs=1e-5)
    [window] = quality["windows"]  # everything was scored today
    assert {key: value for key, value in window.items() if key != "window"} == quality["overall"]
    analysis = Run(champion).result(Analyze).metrics[rules.headline]
    assert quality[f"champion_{rules.headline}"] == pytest.approx(analysis, abs=1e-6)
    assert quality["bound"] == pytest.approx(analysis * 1.1, abs=1e-5)
    worse = quality["overall"][rules.headline] > quality["bound"]
    assert (quality["status"], quality["breach"]) == (("breach", True) if worse else ("ok", False))
    logged = MlflowClient().get_run(result.mlflow_run_id).data.metrics
    assert {key: logged[f"quality_{key}"] for key in expected if key != "rows"} == pytest.approx(
        {key: value for key, value in quality["overall"].items() if key != "rows"})
    html = storage.read_bytes(result.report_html).decode()
    assert f"Champion {rules.label}" in html and f'data-plot="quality:{rules.headline}"' in html
    assert all(f"<th>{title}</th>" in html for title in TITLES[task])


@pytest.mark.parametrize("task", TASKS)
def test_outcomes_made_worse_are_a_quality_breach_with_the_reason(champions, store, task, tmp_path):
    champion, rules = champions[task], RULES[task]
    frame = cases(champion)
    score(champion, frame, tmp_path)
    write_outcomes(champion, shuffled(champion, frame))
    result, report = monitor(champion)
    quality = report["quality"]
    value, bound = quality["overall"][rules.headline], quality["bound"]
    assert (quality["status"], quality["breach"], result.breach) == ("breach", True, True)
    analysis = quality[f"champion_{rules.headline}"]
    reason = (f"quality: {rules.label} {value:.3f} on {len(frame):,} outcomes is above {bound:.3f} "
              f"(champion {analysis:.3f} + 10%)")
    assert reason in result.reasons and reason.removeprefix("quality: ") in result.retrain_notes
    assert MlflowClient().get_run(result.mlflow_run_id).data.metrics["breach"] == 1.0


@pytest.mark.parametrize("task", TASKS)
def test_the_specs_maximum_breaches_whatever_the_champion(champions, store, task, tmp_path):
    champion, rules = champions[task], RULES[task]
    frame = cases(champion)
    score(champion, frame, tmp_path)
    write_outcomes(champion, frame)
    result, report = monitor(champion, **{f"monitoring.feedback.{MAXIMUM[task]}": 1e-3,
                                          "monitoring.feedback.max_metric_drop": 100.0})
    value = report["quality"]["overall"][rules.headline]
    assert report["quality"]["bound"] == 1e-3 and report["quality"]["status"] == "breach"
    assert (f"quality: {rules.label} {value:.3f} on {len(frame):,} outcomes is above 0.001 (maximum 0.001)"
            in result.reasons)


@pytest.mark.parametrize("task", TASKS)
def test_too_few_outcomes_are_not_judged(champions, store, task, tmp_path):
    champion = champions[task]
    frame = cases(champion)
    score(champion, frame, tmp_path)
    write_outcomes(champion, shuffled(champion, frame).head(MIN_LABELS - 1))
    result, report = monitor(champion)
    quality = report["quality"]
    assert (quality["status"], quality["breach"], quality["labels"]) == ("not_enough_labels", False,
                                                                         MIN_LABELS - 1)
    assert quality["reasons"] == [f"only {MIN_LABELS - 1} outcomes have arrived; {MIN_LABELS} are needed to judge "
                                  "the model"]
    assert not any(reason.startswith("quality:") for reason in result.reasons)


@pytest.mark.parametrize("task", TASKS)
def test_what_the_server_answered_is_compared_with_the_reference(champions, store, task):
    from tests.fixtures.serving import records, running, wait_ready

    champion = champions[task]
    pipeline, served_model = Run(champion).spec, model(champion)
    frame = cases(champion)
    body = {"records": records(frame, served_model.schema["columns"])}
    capture = Capture(captured_folder(pipeline.name), 1.0)
    with running(create_app(pipeline, poll_seconds=3600, token="", capture=capture)) as url:
        wait_ready(url)
        answers = httpx.post(f"{url}/predict", json=body, timeout=30).json()["predictions"]
    _, report = monitor(champion)  # the captured rows are written on shutdown
    assert report["rows"] == {"total": len(frame), "batch": 0, "served": len(frame)}
    outputs = served_model.class_columns() if task == Task.MULTICLASS else ["score"]
    served = pd.DataFrame([{f"probability_{name}": p for name, p in answer["probabilities"].items()}
                           if task == Task.MULTICLASS else {"score": answer["score"]} for answer in answers])
    ref = reference.load(Run(champion).uri)
    assert sorted(report["outputs"]) == sorted(outputs) and len(served) == len(frame)
    for column in outputs:  # each class's probability as the server answered it, against the reference
        drift = numeric_drift(ref[column], served[column], pipeline.monitoring.bins)
        assert report["outputs"][column]["psi"] == pytest.approx(drift["psi"], abs=1e-9)
        assert report["outputs"][column]["ks"] == pytest.approx(drift["ks"], abs=1e-9)
    assert report["score"] == max(report["outputs"].values(), key=lambda stats: stats["psi"])
    html = storage.read_bytes(report["report_html"]).decode()
    if task == Task.MULTICLASS:
        assert all(f'data-plot="output:{column}"' in html for column in outputs)


@pytest.mark.parametrize(("task", "outcome", "message"), [
    (Task.MULTICLASS, "cultivar_z", r"the outcomes' target.column 'cultivar': classes \['cultivar_z'\] are not "
                                    r"among the model's classes \['cultivar_a', 'cultivar_b', 'cultivar_c'\]"),
    (Task.REGRESSION, "about 150", r"the outcomes' target.column 'target': a regression target must be numeric, "
                                   r"got 'about 150'"),
])
def test_outcomes_that_do_not_fit_the_model_are_refused_naming_the_column(champions, store, task, outcome, message,
                                                                          tmp_path):
    champion = champions[task]
    frame = cases(champion)
    score(champion, frame, tmp_path)
    column = Run(champion).spec.target.column
    bad = frame.astype({column: object})
    bad.loc[7, column] = outcome
    write_outcomes(champion, bad)
    with pytest.raises(Refused, match=r"monitoring.feedback.source file://.*: " + message):
        monitor(champion)
