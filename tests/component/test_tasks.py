"""Regression and multiclass pipelines through the real steps: what train and split make of each task, and bad input
per task (a clear error naming the column, nothing trained or registered)."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn import metrics as skm

from mlpipe.core import spec, uris
from mlpipe.core.errors import Refused
from mlpipe.core.results import Analyze, Ingest, Monitor, Register, Score, Split, Train, Validate
from mlpipe.core.tasks import RULES, Task
from mlpipe.data import datasets
from mlpipe.data.features import labels
from mlpipe.data.profile import write_profile
from mlpipe.model.baseline import Baseline
from mlpipe.model.tabular import TabularModel
from mlpipe.registry.names import THRESHOLD_TAG
from mlpipe.serving.app import create_app
from mlpipe.serving.capture import Capture
from mlpipe.steps import run_step
from mlpipe.store import runs, storage
from mlpipe.store.runs import Run, StepNotFinished
from mlpipe.summary import summarize
from tests.fixtures.analysis import clone, run_steps
from tests.fixtures.tasks import TRAINED, task_spec

TASKS = [Task.REGRESSION, Task.MULTICLASS]


def part(uri: str, name: str) -> pd.DataFrame:
    return datasets.read(Run(uri).result(Split).folder(name))


def model_and_labels(uri: str, name: str) -> tuple[TabularModel, pd.DataFrame, np.ndarray]:
    """The run's model, split part ``name`` and its labels as the model's classes encode them."""
    model = TabularModel.load(Run(uri).result(Train).model_folder)
    frame = part(uri, name)
    return model, frame, labels(frame, Run(uri).spec, model.schema.get("classes"))


@pytest.mark.parametrize("task", TASKS)
def test_the_model_trains_with_the_tasks_objective_and_records_it(task_runs, task):
    uri = task_runs[task]
    trained = Run(uri).result(Train)
    params = MlflowClient().get_run(trained.mlflow_run_id).data.params
    assert params["objective"] == RULES[task].objective
    assert json.loads(params["eval_metric"].replace("'", '"')) == list(RULES[task].round_metrics)
    assert trained.scale_pos_weight is None and "scale_pos_weight" not in params
    model = TabularModel.load(trained.model_folder)
    assert model.task == task
    if task == Task.MULTICLASS:
        assert params["num_class"] == "3"
        assert model.schema["classes"] == ["cultivar_a", "cultivar_b", "cultivar_c"]  # ordered by their text


@pytest.mark.parametrize("task", TASKS)
def test_validation_metrics_are_those_of_the_saved_model_and_baseline(task_runs, task):
    uri = task_runs[task]
    trained = Run(uri).result(Train)
    model, frame, y = model_and_labels(uri, "validation")
    predicted = model.scores(frame).astype("float64")
    baseline = Baseline.load(trained.baseline).scores(frame).astype("float64")
    if task == Task.REGRESSION:
        assert predicted.shape == (len(frame),)
        assert trained.validation["rmse"] == pytest.approx(skm.root_mean_squared_error(y, predicted), abs=1e-3)
        assert trained.validation["mae"] == pytest.approx(skm.mean_absolute_error(y, predicted), abs=1e-3)
        assert trained.validation["baseline_rmse"] == pytest.approx(skm.root_mean_squared_error(y, baseline),
                                                                    abs=1e-6)
        assert trained.baseline_settings["kind"] == "ridge_regression"
    else:
        assert predicted.shape == (len(frame), 3) and np.allclose(predicted.sum(axis=1), 1, atol=1e-5)
        for probabilities in (predicted, baseline):  # float32 probabilities: their sums are 1 within 1e-7
            probabilities /= probabilities.sum(axis=1, keepdims=True)
        assert trained.validation["log_loss"] == pytest.approx(skm.log_loss(y, predicted, labels=[0, 1, 2]),
                                                               abs=1e-5)
        assert trained.validation["error"] == pytest.approx(1 - skm.accuracy_score(y, predicted.argmax(axis=1)),
                                                            abs=1e-6)
        assert trained.validation["baseline_log_loss"] == pytest.approx(
            skm.log_loss(y, baseline, labels=[0, 1, 2]), abs=1e-6)
        assert trained.baseline_settings["kind"] == "multinomial_logistic_regression"


def test_the_multiclass_split_keeps_each_classs_share_in_every_part(task_runs):
    uri = task_runs[Task.MULTICLASS]
    column = Run(uri).spec.target.column
    whole = datasets.read(Run(uri).result(Ingest).snapshot)[column].value_counts(normalize=True)
    for name in ("train", "validation", "analysis"):
        shares = part(uri, name)[column].value_counts(normalize=True)
        assert set(shares.index) == set(whole.index)
        assert (shares - whole).abs().max() < 0.02, name  # dealt by class, rounded to a row


def test_the_regression_split_deals_every_decile_of_the_target_to_every_part(task_runs):
    uri = task_runs[Task.REGRESSION]
    column = Run(uri).spec.target.column
    whole = datasets.read(Run(uri).result(Ingest).snapshot)[column]
    edges = np.quantile(whole, np.linspace(0, 1, 11)[1:-1])
    for name, share in (("train", 0.6), ("validation", 0.2), ("analysis", 0.2)):
        deciles = np.bincount(np.searchsorted(edges, part(uri, name)[column], side="right"), minlength=10)
        assert np.abs(deciles - share * len(whole) / 10).max() <= 3, (name, deciles)


def started(tmp_path, task: Task, change, profile_changed: bool = False) -> str:
    """A run of ``task``'s spec whose data ``change`` edited (a DataFrame -> DataFrame); its reference profile is
    of the data before the change (the reviewed one), or after it (``profile_changed``)."""
    loaded = task_spec(tmp_path, task)
    source = uris.local_path(loaded.data.source)
    change(pd.read_csv(source)).to_csv(source, index=False)
    if profile_changed:
        write_profile(loaded)
    return runs.start(loaded, "bad")


def test_a_text_value_in_a_regression_target_fails_validation_naming_the_column(module_env, tmp_path):
    def text(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.astype({"target": object}).assign(target=lambda f: f["target"].where(f.index != 7, "high"))

    uri = run_steps(started(tmp_path, Task.REGRESSION, text), ("ingest",))
    with pytest.raises(Refused) as refused:
        run_step("validate", uri)
    assert str(refused.value) == "target.column 'target': a regression target must be numeric, got 'high'"
    with pytest.raises(StepNotFinished):
        Run(uri).result(Validate)


def test_a_class_the_profile_has_not_seen_fails_validation_naming_the_column(module_env, tmp_path):
    def new_class(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(cultivar=frame["cultivar"].where(frame.index >= 5, "cultivar_d"))

    uri = run_steps(started(tmp_path, Task.MULTICLASS, new_class), ("ingest",))
    with pytest.raises(Refused) as refused:
        run_step("validate", uri)
    assert "cultivar: expect_column_values_to_be_in_set" in str(refused.value)
    assert "cultivar_d" in str(refused.value)


def test_a_multiclass_spec_whose_data_has_one_class_is_refused_by_train_naming_the_column(module_env, tmp_path):
    def one_class(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["cultivar"] == "cultivar_b"]

    uri = run_steps(started(tmp_path, Task.MULTICLASS, one_class, profile_changed=True),
                    ("ingest", "validate", "split", "validate_split"))
    with pytest.raises(Refused) as refused:
        run_step("train", uri)
    assert str(refused.value).startswith("the train split needs two classes or more of target.column 'cultivar' for "
                                         "a multiclass model; its ")
    assert "['cultivar_b']" in str(refused.value)
    with pytest.raises(StepNotFinished):
        Run(uri).result(Train)


@pytest.fixture(scope="module", name="champions")
def champions_fixture(task_runs) -> dict[Task, str]:
    """Each task's trained run, cloned with a gate any sane model passes, analyzed and registered (task -> run)."""
    return {task: run_steps(clone(task_runs[task], f"{task}_champion", TRAINED, **{
        "thresholds.min_lift_over_baseline": -1e9}), ("analyze", "register")) for task in TASKS}


@pytest.mark.parametrize("task", TASKS)
def test_register_gates_the_task_on_its_headline_metric_and_tags_it(champions, task):
    uri = champions[task]
    name, metrics = RULES[task].headline, Run(uri).result(Analyze).metrics
    registered = Run(uri).result(Register)
    assert registered.promoted and registered.champion_version == registered.version
    assert registered.reasons == [f"no champion yet and the spec thresholds pass ({name} {metrics[name]:.4f}, "
                                  f"lift {metrics['lift']:.4f})"]
    assert set(registered.metrics) == {name, "lift", "disparate_impact"}
    tags = MlflowClient().get_model_version(registered.model_name, str(registered.version)).tags
    assert float(tags[f"mlpipe.analysis_{name}"]) == metrics[name]
    assert float(tags[f"mlpipe.baseline_{name}"]) == metrics[f"baseline_{name}"]
    assert THRESHOLD_TAG not in tags  # no decision threshold outside binary


@pytest.mark.parametrize("task", TASKS)
def test_a_second_model_is_compared_with_the_champion_rescored_on_its_analysis_set(champions, task):
    uri = run_steps(clone(champions[task], f"{task}_challenger", (*TRAINED, "analyze"), **{
        "thresholds.min_lift_over_baseline": -1e9, "thresholds.min_improvement_over_champion": 1e-9}),
        ("register",))
    registered, name = Run(uri).result(Register), RULES[task].headline
    assert not registered.promoted  # the same model: no improvement
    assert registered.compared_with == Run(champions[task]).result(Register).version
    assert registered.reasons[0].startswith(f"{name} ") and "improvement +0.0000 < " in registered.reasons[0]


@pytest.mark.parametrize("task", TASKS)
def test_batch_scoring_writes_what_the_task_predicts(champions, task):
    trained = Run(champions[task])
    source = uris.local_path(trained.spec.data.source)
    uri = runs.start(trained.spec, f"{task}_scored", options={"input_uri": str(source)}, kind=runs.SCORING)
    scored = Score.model_validate(run_step("score", uri))
    predictions = datasets.read(scored.predictions)
    frame = pd.read_csv(source)
    model = TabularModel.load(trained.result(Train).model_folder)
    expected = model.scores(frame)
    assert scored.rows == len(frame) and scored.threshold is None and scored.positive_decisions is None
    assert predictions[trained.spec.id_columns[0]].tolist() == frame[trained.spec.id_columns[0]].tolist()
    if task == Task.REGRESSION:
        assert list(predictions.columns) == ["patient_id", "score", "model_version", "scored_at"]
        assert np.allclose(predictions["score"], expected, atol=1e-5)
    else:
        classes = ["cultivar_a", "cultivar_b", "cultivar_c"]
        assert list(predictions.columns) == ["wine_id", *(f"probability_{c}" for c in classes), "predicted_class",
                                             "model_version", "scored_at"]
        assert np.allclose(predictions[[f"probability_{c}" for c in classes]], expected, atol=1e-6)
        assert predictions["predicted_class"].tolist() == [classes[i] for i in expected.argmax(axis=1)]
    assert (predictions["model_version"] == trained.result(Register).version).all()


@pytest.mark.parametrize("task", TASKS)
def test_the_run_summary_shows_the_tasks_metrics(champions, task):
    uri = champions[task]
    text, rules = summarize(uri), RULES[task]
    metrics = Run(uri).result(Analyze).metrics
    validation = Run(uri).result(Train).validation
    assert f"validation {rules.label} {validation[rules.headline]:.4f} at iteration" in text
    extra = {Task.REGRESSION: f", R² {metrics.get('r2', float('nan')):.4f}",
             Task.MULTICLASS: f", accuracy {metrics.get('accuracy', float('nan')):.4f}"}[task]
    assert (f"{rules.label} {metrics[rules.headline]:.4f}" in text and extra in text
            and f"baseline {rules.label} {metrics[f'baseline_{rules.headline}']:.4f}" in text)


@pytest.mark.parametrize("task", TASKS)
def test_monitoring_compares_the_champions_features_and_outputs_with_its_reference(champions, task):
    trained = Run(champions[task])
    pipeline = spec.with_overrides(trained.spec, {"monitoring.min_rows": 100})
    source = uris.local_path(pipeline.data.source)
    run_step("score", runs.start(pipeline, "monitored_batch", options={"input_uri": str(source)}, kind=runs.SCORING))
    monitored = Monitor.model_validate(run_step("monitor", runs.start(pipeline, "monitoring", kind=runs.MONITORING)))
    report = storage.read_json(monitored.report)
    scoring_runs = runs.newest_first(uris.join(runs.store_uri(), pipeline.name, runs.SCORING))
    assert monitored.status in ("ok", "breach") and len(scoring_runs) >= 1
    assert monitored.rows["batch"] == sum(Run(uri).result(Score).rows for uri in scoring_runs)
    model = TabularModel.load(trained.result(Train).model_folder)
    assert set(report["features"]) == set(model.schema["columns"])
    outputs = model.class_columns() if task == Task.MULTICLASS else ["score"]  # each class's probability
    assert sorted(report["outputs"]) == sorted(outputs)
    assert all(stats["kind"] == "numeric" for stats in report["outputs"].values())
    assert report["score"] == max(report["outputs"].values(), key=lambda stats: stats["psi"])


def test_a_champion_of_another_task_is_not_compared_and_the_new_version_is_removed_again(champions):
    multiclass = Run(champions[Task.MULTICLASS]).result(Register)
    before = MlflowClient().search_model_versions(f"name = '{multiclass.model_name}'")
    uri = clone(champions[Task.REGRESSION], "regression_as_multiclass", (*TRAINED, "analyze"),
                model_name=multiclass.model_name)
    with pytest.raises(Refused) as refused:
        run_step("register", uri)
    assert str(refused.value) == (
        f"champion {multiclass.model_name} version {multiclass.version} predicts a multiclass target with the classes "
        "['cultivar_a', 'cultivar_b', 'cultivar_c'] and this run's model a regression target: they cannot be "
        f"compared; register it under another model_name, or roll the champion back (mlpipe rollback "
        f"{multiclass.model_name})")
    after = MlflowClient().search_model_versions(f"name = '{multiclass.model_name}'")
    assert sorted(v.version for v in after) == sorted(v.version for v in before)  # nothing half-registered


@pytest.mark.parametrize("task", TASKS)
def test_the_model_server_answers_with_the_tasks_prediction_and_contributions(champions, task, tmp_path):
    from tests.fixtures.serving import records, running, wait_ready

    trained = Run(champions[task])
    rows = pd.read_csv(uris.local_path(trained.spec.data.source)).head(25)
    model = TabularModel.load(trained.result(Train).model_folder)
    capture = Capture(uris.normalize(tmp_path / "capture"), 0.0)
    with running(create_app(trained.spec, poll_seconds=3600, token="", capture=capture)) as url:
        wait_ready(url)
        body = {"records": records(rows, model.schema["columns"])}
        predicted = httpx.post(f"{url}/predict", json=body, timeout=30).json()
        explained = httpx.post(f"{url}/explain", json=body, timeout=30).json()["explanations"]
        metadata = httpx.get(f"{url}/metadata", timeout=30).json()
    assert predicted["model"]["version"] == trained.result(Register).version
    assert metadata["task"] == task and metadata["threshold"] is None
    expected, margins = model.scores(rows), model.booster.predict(model.dmatrix(rows), output_margin=True,
                                                                   iteration_range=model.tree_range())
    if task == Task.REGRESSION:
        assert [set(p) for p in predicted["predictions"]] == [{"score"}] * len(rows)  # the value, no decision
        assert np.allclose([p["score"] for p in predicted["predictions"]], expected, atol=1e-5)
        summed = [e["bias"] + sum(e["contributions"].values()) for e in explained]
        assert np.allclose(summed, margins, atol=1e-3)  # SHAP adds up to the prediction
    else:
        classes = model.schema["classes"]
        served = [[p["probabilities"][name] for name in classes] for p in predicted["predictions"]]
        assert np.allclose(served, expected, atol=1e-6)
        assert [p["predicted_class"] for p in predicted["predictions"]] == [classes[i] for i in expected.argmax(1)]
        summed = [[e["bias"][name] + sum(e["contributions"][name].values()) for name in classes] for e in explained]
        assert np.allclose(summed, margins, atol=1e-3)  # each class's log-odds


def test_the_deploy_smoke_check_compares_each_class_probability():
    from mlpipe.steps.deploy import DeployError, check_answer

    answer = {"model": {"version": 3}, "predictions": [{"probabilities": {"b": 0.25, "a": 0.75},
                                                        "predicted_class": "a"}]}
    check_answer(answer, 3, [[0.75, 0.25]], ["a", "b"])  # in the model's class order, whatever the JSON's
    with pytest.raises(DeployError, match=r"scores differ from the model's own by up to 0\.5"):
        check_answer(answer, 3, [[0.25, 0.75]], ["a", "b"])
    with pytest.raises(DeployError, match="unexpected answer"):
        check_answer(answer, 3, [[0.75]])  # read as a binary or regression answer: no score
