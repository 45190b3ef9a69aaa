"""analyze for regression and multiclass targets: metrics, deciles, per-class tables and slices checked against
scikit-learn and pandas on the analysis split, sensitivity and SHAP contributions recomputed here, plots, MLflow,
and an analysis set whose target does not vary refused."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn import metrics as skm

from mlpipe.core.errors import Refused
from mlpipe.core.results import Analyze, Split, Train
from mlpipe.core.tasks import RULES, Task
from mlpipe.data import datasets
from mlpipe.data.features import labels
from mlpipe.model.baseline import load_baseline
from mlpipe.model.tabular import TabularModel
from mlpipe.steps import run_step
from mlpipe.steps.analyze import SENSITIVITY_SCALES
from mlpipe.store import storage
from mlpipe.store.runs import ERROR, Run
from tests.fixtures.analysis import check_plots, clone, detach_mlflow_run, replace_result

PLOTS = {"regression": {"residuals", "predicted_vs_actual", "feature_contributions"},
         "multiclass": {"confusion_matrix", "feature_contributions"}}
TRAINED = ("ingest", "validate", "split", "validate_split", "train")


@pytest.fixture(scope="module", name="analyzed")
def analyzed_fixture(task_runs) -> dict[str, str]:
    """The task runs (task -> run URI), each analyzed once."""
    for uri in task_runs.values():
        run_step("analyze", uri)
    return task_runs


class Inputs:
    """The analysis split of a run and what is computed from it here, independently of the step."""

    def __init__(self, uri: str):
        run = Run(uri)
        self.run = run
        self.frame = datasets.read(run.result(Split).analysis)
        self.model = TabularModel.load(run.result(Train).model_folder)
        self.y = labels(self.frame, run.spec, self.model.schema.get("classes"))
        self.scores = self.model.scores(self.frame)
        self.baseline = load_baseline(run).scores(self.frame)
        self.result = run.result(Analyze)
        self.report = storage.read_json(self.result.metrics_uri)


def with_analysis(source: str, run_id: str, frame: pd.DataFrame, **overrides) -> str:
    """A clone of run ``source`` (``overrides`` on its spec, a new MLflow run) whose analysis split is ``frame``."""
    uri = detach_mlflow_run(clone(source, run_id, TRAINED, **overrides))
    written = storage.write_parquet(frame, Run(uri).path("split", "analysis.parquet"))
    replace_result(uri, "split", analysis=written)
    return uri


def test_every_task_reports_its_headline_metric_against_the_baseline(analyzed):
    for task, uri in analyzed.items():
        metrics = Run(uri).result(Analyze).metrics
        name = RULES[Task(task)].headline
        assert {name, f"baseline_{name}", "lift"} <= set(metrics)
        assert not RULES[Task(task)].higher_is_better  # RMSE, log loss: the lift is positive when the model's is lower
        assert metrics["lift"] == pytest.approx(metrics[f"baseline_{name}"] - metrics[name], abs=2e-6)
        assert "threshold" not in metrics


def test_regression_metrics_match_sklearn(analyzed):
    given = Inputs(analyzed["regression"])
    got, y, predicted = given.result.metrics, given.y, given.scores
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, predicted)), abs=1e-6)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, predicted), abs=1e-6)
    assert got["r2"] == pytest.approx(skm.r2_score(y, predicted), abs=1e-6)
    assert got["mean_error"] == pytest.approx(float(np.mean(predicted - y)), abs=1e-5)
    assert got["baseline_rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, given.baseline)), rel=1e-6)
    assert got["r2"] > 0.2  # the (small) model has learned something real
    assert given.result.confusion_matrix is None and given.result.per_class is None


def test_regression_errors_by_decile_of_the_prediction(analyzed):
    given = Inputs(analyzed["regression"])
    deciles, y, predicted = given.result.deciles, given.y, given.scores
    groups = np.array_split(np.argsort(predicted, kind="stable"), 10)
    assert [stats["decile"] for stats in deciles] == list(range(1, 11))
    assert sum(stats["rows"] for stats in deciles) == len(given.frame)
    for stats, rows in zip(deciles, groups, strict=True):
        assert stats["rows"] == len(rows)
        assert stats["mean_predicted"] == pytest.approx(predicted[rows].mean(), abs=1e-5)
        assert stats["mean_actual"] == pytest.approx(y[rows].mean(), abs=1e-6)
        assert stats["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y[rows], predicted[rows])), abs=1e-5)
    means = [stats["mean_predicted"] for stats in deciles]
    assert means == sorted(means) and means[0] < means[-1]
    assert given.report["deciles"] == deciles


def test_multiclass_metrics_match_sklearn(analyzed):
    given = Inputs(analyzed["multiclass"])
    got, y, probabilities = given.result.metrics, given.y, given.scores
    classes = given.model.schema["classes"]
    assert probabilities.shape == (len(given.frame), len(classes))
    assert set(y) == set(range(len(classes)))  # every class is held: sklearn's one-vs-rest AUC needs them all
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, probabilities), abs=1e-6)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, probabilities.argmax(axis=1)), abs=1e-6)
    for average in ("macro", "weighted"):
        expected = skm.roc_auc_score(y, probabilities, multi_class="ovr", average=average)
        assert got[f"roc_auc_ovr_{average}"] == pytest.approx(expected, abs=1e-6)
    baseline = given.baseline / given.baseline.sum(axis=1, keepdims=True)  # its rows sum to one within 1e-7 only
    assert got["baseline_log_loss"] == pytest.approx(skm.log_loss(y, baseline), abs=1e-6)
    assert got["accuracy"] > 0.8
    assert given.result.deciles is None


def test_multiclass_per_class_metrics_and_confusion_matrix(analyzed):
    given = Inputs(analyzed["multiclass"])
    classes = given.model.schema["classes"]
    actual = np.array(classes)[given.y]
    predicted = np.array(classes)[given.scores.argmax(axis=1)]
    report = skm.classification_report(actual, predicted, labels=classes, output_dict=True, zero_division=0)
    per_class = given.result.per_class
    assert set(per_class) == set(classes)
    for name, stats in per_class.items():
        assert stats["precision"] == pytest.approx(report[name]["precision"], abs=1e-6)
        assert stats["recall"] == pytest.approx(report[name]["recall"], abs=1e-6)
        assert stats["f1"] == pytest.approx(report[name]["f1-score"], abs=1e-6)
        assert stats["support"] == report[name]["support"] == (actual == name).sum()
        expected = skm.roc_auc_score(actual == name, given.scores[:, classes.index(name)])
        assert stats["roc_auc"] == pytest.approx(expected, abs=1e-6)
    cells = skm.confusion_matrix(actual, predicted, labels=classes)
    confusion = given.result.confusion_matrix
    assert confusion == {a: {p: int(cells[i, j]) for j, p in enumerate(classes)} for i, a in enumerate(classes)}
    assert sum(sum(row.values()) for row in confusion.values()) == len(given.frame)
    assert given.report["per_class"] == per_class and given.report["confusion_matrix"] == confusion


def test_plots_are_png_images(analyzed):
    for task, uri in analyzed.items():
        check_plots(uri, PLOTS[task])


def test_regression_slices(analyzed):
    given = Inputs(analyzed["regression"])
    slices = given.result.slices
    assert set(slices) == set(given.run.spec.slices) == {"sex"}
    table = pd.DataFrame({"sex": given.frame["sex"].astype(str), "y": given.y, "predicted": given.scores})
    assert set(slices["sex"]) == set(table["sex"]) and len(slices["sex"]) > 1
    for value, rows in table.groupby("sex"):
        stats = slices["sex"][value]
        assert stats["rows"] == len(rows)
        assert stats["mean_actual"] == pytest.approx(rows["y"].mean(), abs=1e-6)
        assert stats["mean_predicted"] == pytest.approx(rows["predicted"].mean(), abs=1e-5)
        assert stats["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(rows["y"], rows["predicted"])),
                                              abs=1e-5)


def test_multiclass_slices_with_a_missing_value(analyzed):
    frame = datasets.read(Run(analyzed["multiclass"]).result(Split).analysis)
    cellars = np.random.default_rng(3).choice(["north", "south", None], size=len(frame))
    frame["cellar"] = pd.Series(cellars, dtype="string")
    uri = with_analysis(analyzed["multiclass"], "cellar_slices", frame, slices=["cellar"])
    slices = run_step("analyze", uri)["slices"]
    given = Inputs(uri)
    keys = frame["cellar"].fillna("<missing>").to_numpy()
    assert set(slices) == {"cellar"}
    assert set(slices["cellar"]) == {"north", "south", "<missing>"}
    for value, stats in slices["cellar"].items():
        rows = keys == value
        y, probabilities = given.y[rows], given.scores[rows]
        assert stats["rows"] == rows.sum()
        assert stats["accuracy"] == pytest.approx(skm.accuracy_score(y, probabilities.argmax(axis=1)), abs=1e-6)
        assert stats["log_loss"] == pytest.approx(skm.log_loss(y, probabilities, labels=[0, 1, 2]), abs=1e-6)
    logged = MlflowClient().get_run(Run(uri).result(Train).mlflow_run_id).data.metrics
    assert logged["slice_cellar__missing_accuracy"] == slices["cellar"]["<missing>"]["accuracy"]
    assert logged["slice_cellar_north_log_loss"] == slices["cellar"]["north"]["log_loss"]


def perturbed_changes(model: TabularModel, frame: pd.DataFrame, seed: int):
    """The model's scores and, for each scale, its scores with every numeric input scaled by ``1 ± scale``."""
    numeric = [c for c in model.schema["columns"] if c not in model.schema["categorical"]]
    rng = np.random.default_rng(seed)
    for scale in SENSITIVITY_SCALES:
        signs = rng.choice([-1.0, 1.0], size=(len(frame), len(numeric)))
        moved = frame.copy()
        moved[numeric] = frame[numeric].to_numpy(dtype="float64") * (1 + scale * signs)
        yield f"{round(scale * 100)}pct", model.scores(moved)


def test_sensitivity_is_recomputed_here(analyzed):
    for task, uri in analyzed.items():
        given = Inputs(uri)
        sensitive = given.result.sensitivity
        assert given.result.sample_rows == len(given.frame)  # a small analysis set: all of it
        assert list(sensitive) == ["1pct", "5pct"]
        for name, moved in perturbed_changes(given.model, given.frame, given.run.spec.split.seed):
            change = np.abs(moved - given.scores)
            stats = sensitive[name]
            assert stats["mean_abs_change"] == pytest.approx(change.mean(), abs=1e-5)
            assert stats["max_abs_change"] == pytest.approx(change.max(), abs=1e-5)
            if task == "regression":
                assert "flip_rate" not in stats
            else:
                flips = moved.argmax(axis=1) != given.scores.argmax(axis=1)
                assert stats["flip_rate"] == pytest.approx(flips.mean(), abs=1e-6)
        assert 0 < sensitive["1pct"]["mean_abs_change"] < sensitive["5pct"]["mean_abs_change"]


def test_regression_contributions_rank_mean_abs_shap(analyzed):
    given = Inputs(analyzed["regression"])
    expected = given.model.contributions(given.frame).drop(columns="bias").abs().mean().sort_values(ascending=False)
    top = given.result.top_features
    assert [name for name, _ in top] == list(expected.index[:10])
    assert [value for _, value in top] == pytest.approx(list(expected.iloc[:10]), abs=1e-6)
    assert len(given.report["feature_contributions"]) == len(given.model.schema["columns"])
    assert "class_contributions" not in given.report


def test_multiclass_contributions_per_class_and_overall(analyzed):
    given = Inputs(analyzed["multiclass"])
    model, classes, columns = given.model, given.model.schema["classes"], given.model.schema["columns"]
    values = model.booster.predict(model.dmatrix(given.frame), pred_contribs=True, iteration_range=model.tree_range())
    margins = model.booster.predict(model.dmatrix(given.frame), output_margin=True,
                                    iteration_range=model.tree_range())
    assert values.shape == (len(given.frame), len(classes), len(columns) + 1)
    assert values.sum(axis=2) == pytest.approx(margins, abs=1e-3)  # rows x classes x (features, bias)
    mean_abs = pd.DataFrame(np.abs(values[:, :, :-1]).mean(axis=0), index=classes, columns=columns)
    by_class = given.report["class_contributions"]
    assert set(by_class) == set(classes)
    for name in classes:
        expected = mean_abs.loc[name].sort_values(ascending=False)
        assert [feature for feature, _ in by_class[name]] == list(expected.index)
        assert [value for _, value in by_class[name]] == pytest.approx(list(expected), abs=1e-6)
    overall = mean_abs.mean().sort_values(ascending=False)
    assert [feature for feature, _ in given.report["feature_contributions"]] == list(overall.index)
    assert [name for name, _ in given.result.top_features] == list(overall.index[:10])
    assert [value for _, value in given.result.top_features] == pytest.approx(list(overall.iloc[:10]), abs=1e-6)


def test_metrics_and_plots_are_logged_to_the_training_mlflow_run(analyzed):
    client = MlflowClient()
    for task, uri in analyzed.items():
        result = Run(uri).result(Analyze)
        assert result.mlflow_run_id == Run(uri).result(Train).mlflow_run_id
        logged = client.get_run(result.mlflow_run_id).data.metrics
        expected = {f"analysis_{key}": value for key, value in result.metrics.items()}
        for scale, stats in result.sensitivity.items():
            expected.update({f"analysis_sensitivity_{scale}_{key}": value for key, value in stats.items()})
        if task == "regression":
            for stats in result.deciles:
                expected.update({f"analysis_decile_{stats['decile']}_{key}": value for key, value in stats.items()
                                 if key != "decile"})
            expected["slice_sex_male_rmse"] = result.slices["sex"]["male"]["rmse"]
            expected["slice_sex_female_mean_actual"] = result.slices["sex"]["female"]["mean_actual"]
        else:
            for name, stats in result.per_class.items():
                expected.update({f"analysis_class_{name}_{key}": value for key, value in stats.items()})
            for actual, row in result.confusion_matrix.items():
                expected.update({f"analysis_confusion_{actual}_{predicted}": rows for predicted, rows in row.items()})
        assert {key: logged.get(key) for key in expected} == expected
        assert not any(key.startswith("analysis_") for key in set(logged) - set(expected))
        artifacts = {item.path for item in client.list_artifacts(result.mlflow_run_id, "analysis/plots")}
        assert artifacts == {f"analysis/plots/{name}.png" for name in PLOTS[task]}
        local = client.download_artifacts(result.mlflow_run_id, "analysis/metrics.json")
        with open(local) as handle:
            assert json.load(handle) == storage.read_json(result.metrics_uri)


def test_the_report_holds_the_result(analyzed):
    for task, uri in analyzed.items():
        given = Inputs(uri)
        report = given.report
        assert report["task"] == task and "threshold_rule" not in report
        assert report["rows"] == len(given.frame) and report["sample_rows"] == given.result.sample_rows
        assert report["metrics"] == given.result.metrics
        assert report["slices"] == given.result.slices and report["sensitivity"] == given.result.sensitivity
        assert [tuple(item) for item in report["feature_contributions"][:10]] == given.result.top_features


@pytest.mark.parametrize(("task", "column", "value"),
                         [("regression", "target", 150.0), ("multiclass", "cultivar", "cultivar_b")])
def test_an_analysis_set_whose_target_does_not_vary_is_refused(analyzed, task, column, value):
    frame = datasets.read(Run(analyzed[task]).result(Split).analysis)
    frame[column] = value
    uri = with_analysis(analyzed[task], f"constant_{task}", frame)
    with pytest.raises(Refused, match=f"target.column '{column}'.*two (classes|distinct values) or more"):
        run_step("analyze", uri)
    assert storage.children(Run(uri).path("analyze")) == [ERROR]
    mlflow_run = Run(uri).result(Train).mlflow_run_id
    assert MlflowClient().get_run(mlflow_run).data.metrics == {}
    assert MlflowClient().list_artifacts(mlflow_run) == []
