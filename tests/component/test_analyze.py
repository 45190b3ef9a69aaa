"""analyze: metrics checked against sklearn, a threshold from validation only, slices, plots, MLflow;
the same numbers whatever the batch size, sensitivity and SHAP on a seeded sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn import metrics as skm

from mlpipe.core.errors import Refused
from mlpipe.core.results import Analyze, Split, Train
from mlpipe.data import datasets
from mlpipe.data.features import labels, schema
from mlpipe.model.baseline import load_baseline
from mlpipe.model.tabular import TabularModel
from mlpipe.steps import analyze as analyze_step
from mlpipe.steps import run_step
from mlpipe.steps.analyze import choose_threshold, sensitivity
from mlpipe.store import storage
from mlpipe.store.runs import ERROR, Run
from tests.fixtures.analysis import check_plots, clone, detach_mlflow_run, replace_result

PLOTS = {"roc", "pr", "calibration", "confusion_matrix", "feature_contributions"}


def analysis_inputs(uri: str):
    """The analysis frame, its 0/1 labels and the trained model's scores, computed here independently."""
    run = Run(uri)
    frame = datasets.read(run.result(Split).analysis)
    model = TabularModel.load(run.result(Train).model_folder)
    return frame, labels(frame, run.spec), model.scores(frame)


def relabeled(source: str, run_id: str, part: str, positive: np.ndarray) -> str:
    """A clone of run ``source`` whose split ``part`` has the target set from the boolean ``positive``."""
    uri = detach_mlflow_run(clone(source, run_id, ("ingest", "split", "train")))
    run = Run(uri)
    frame = datasets.read(run.result(Split).folder(part))
    target = run.spec.target
    frame[target.column] = np.where(positive, target.positive_class, "good")
    written = storage.write_parquet(frame, run.path("split", f"{part}.parquet"))
    replace_result(uri, "split", **{part: written})
    return uri


def test_metrics_match_sklearn_on_the_analysis_set(analyzed_run):
    result = Run(analyzed_run).result(Analyze)
    frame, y, scores = analysis_inputs(analyzed_run)
    got = result.metrics
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, scores), abs=1e-6)
    assert got["pr_auc"] == pytest.approx(skm.average_precision_score(y, scores), abs=1e-6)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, scores), abs=1e-6)
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y, scores), abs=1e-6)
    decided = scores >= got["threshold"]
    assert got["precision"] == pytest.approx(skm.precision_score(y, decided), abs=1e-6)
    assert got["recall"] == pytest.approx(skm.recall_score(y, decided), abs=1e-6)
    assert got["f1"] == pytest.approx(skm.f1_score(y, decided), abs=1e-6)
    tn, fp, fn, tp = skm.confusion_matrix(y, decided).ravel()
    assert result.confusion_matrix == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert tn + fp + fn + tp == len(frame)
    baseline = skm.roc_auc_score(y, load_baseline(Run(analyzed_run)).scores(frame))
    assert got["baseline_roc_auc"] == pytest.approx(baseline, abs=1e-6)
    assert got["lift"] == pytest.approx(got["roc_auc"] - baseline, abs=2e-6)
    assert got["roc_auc"] > 0.65  # the (fast-trained) model has learned something real


def test_threshold_comes_from_validation_not_analysis(analyzed_run):
    run = Run(analyzed_run)
    original = run.result(Analyze).metrics
    model = TabularModel.load(run.result(Train).model_folder)
    scores = model.scores(datasets.read(run.result(Split).validation))
    # Validation labels that a cut at the 90th-percentile score separates perfectly: F1 is 1 there.
    cut = float(np.sort(scores)[int(0.9 * len(scores))])
    uri = relabeled(analyzed_run, "new_validation_labels", "validation", scores >= cut)
    threshold = run_step("analyze", uri)["metrics"]["threshold"]
    assert threshold == pytest.approx(cut, abs=1e-7) != original["threshold"]

    _, y, _ = analysis_inputs(analyzed_run)
    uri = relabeled(analyzed_run, "new_analysis_labels", "analysis",
                    np.random.default_rng(0).permutation(y).astype(bool))
    shuffled = run_step("analyze", uri)["metrics"]
    assert shuffled["threshold"] == original["threshold"]
    assert shuffled["roc_auc"] < original["roc_auc"] - 0.1


def test_choose_threshold_maximizes_f1():
    y = np.array([0, 0, 1, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.8, 0.9])
    best = max(scores, key=lambda t: skm.f1_score(y, scores >= t))
    assert choose_threshold(y, scores) == best == 0.3


def test_slices_cover_every_value_of_each_slice_column(analyzed_run):
    run = Run(analyzed_run)
    slices = run.result(Analyze).slices
    frame, y, scores = analysis_inputs(analyzed_run)
    assert set(slices) == set(run.spec.slices)
    for column, values in slices.items():
        assert set(values) == set(frame[column].astype(str))
        assert sum(stats["rows"] for stats in values.values()) == len(frame)
        assert sum(stats["positives"] for stats in values.values()) == y.sum()
    rows = (frame["term"] == "term_60").to_numpy()
    term_60 = slices["term"]["term_60"]
    assert term_60["roc_auc"] == pytest.approx(skm.roc_auc_score(y[rows], scores[rows]), abs=1e-6)
    assert term_60["mean_score"] == pytest.approx(scores[rows].mean(), abs=1e-6)
    assert term_60["positive_rate"] == pytest.approx(y[rows].mean(), abs=1e-6)


def test_sensitivity_is_seeded_and_grows_with_the_perturbation_size(analyzed_run):
    run = Run(analyzed_run)
    result = run.result(Analyze)
    frame, _, _ = analysis_inputs(analyzed_run)
    model = TabularModel.load(run.result(Train).model_folder)
    threshold = result.metrics["threshold"]
    assert result.sample_rows == len(frame)  # the bundled analysis set is smaller than the sample: all of it
    assert sensitivity(model, frame, threshold, run.spec.split.seed) == result.sensitivity
    assert sensitivity(model, frame, threshold, run.spec.split.seed + 1) != result.sensitivity
    small, large = result.sensitivity["1pct"], result.sensitivity["5pct"]
    assert 0 < small["mean_abs_change"] < large["mean_abs_change"] <= large["max_abs_change"] < 1
    assert small["mean_abs_change"] <= small["max_abs_change"]
    assert all(0 <= stats["flip_rate"] < 0.5 for stats in (small, large))


def test_top_features_are_the_largest_mean_abs_contributions(analyzed_run):
    run = Run(analyzed_run)
    top = run.result(Analyze).top_features
    frame, _, _ = analysis_inputs(analyzed_run)
    model = TabularModel.load(run.result(Train).model_folder)
    expected = model.contributions(frame).drop(columns="bias").abs().mean().sort_values(ascending=False)
    assert [name for name, _ in top] == list(expected.index[:10])
    assert [value for _, value in top] == pytest.approx(list(expected.iloc[:10]), abs=1e-6)
    assert set(expected.index) == set(schema(frame, run.spec)["columns"])


def test_metrics_do_not_depend_on_the_batch_size(analyzed_run):
    original = Run(analyzed_run).result(Analyze)
    uri = detach_mlflow_run(clone(analyzed_run, "small_batches", ("ingest", "split", "train"),
                                  **{"data.batch_rows": 300}))
    assert len(datasets.read(Run(uri).result(Split).analysis)) > 3 * 300  # several batches per pass
    batched = run_step("analyze", uri)
    assert batched["metrics"] == pytest.approx(original.metrics, abs=1e-6)
    assert batched["confusion_matrix"] == original.confusion_matrix
    for column, values in original.slices.items():
        assert set(batched["slices"][column]) == set(values)
        for value, stats in values.items():
            assert batched["slices"][column][value] == pytest.approx(stats, abs=1e-6)


def test_sensitivity_and_contributions_use_a_seeded_sample_of_a_large_analysis_set(analyzed_run, monkeypatch):
    monkeypatch.setattr(analyze_step, "ANALYSIS_SAMPLE_ROWS", 500)
    uri = detach_mlflow_run(clone(analyzed_run, "sampled", ("ingest", "split", "train")))
    run = Run(uri)
    result = run_step("analyze", uri)
    assert result["sample_rows"] == storage.read_json(result["metrics_uri"])["sample_rows"] == 500
    assert result["metrics"] == Run(analyzed_run).result(Analyze).metrics  # metrics still use every row
    sample = datasets.sample(run.result(Split).analysis, 500, run.spec.split.seed)
    model = TabularModel.load(run.result(Train).model_folder)
    threshold = result["metrics"]["threshold"]
    assert sensitivity(model, sample, threshold, run.spec.split.seed) == result["sensitivity"]
    assert result["sensitivity"] != Run(analyzed_run).result(Analyze).sensitivity
    expected = model.contributions(sample).drop(columns="bias").abs().mean().sort_values(ascending=False)
    assert [value for _, value in result["top_features"]] == pytest.approx(list(expected.iloc[:10]), abs=1e-6)


def test_plots_are_png_images(analyzed_run):
    check_plots(analyzed_run, PLOTS)


def test_metrics_and_plots_are_logged_to_the_training_mlflow_run(analyzed_run):
    run = Run(analyzed_run)
    result = run.result(Analyze)
    assert result.mlflow_run_id == run.result(Train).mlflow_run_id
    client = MlflowClient()
    logged = client.get_run(result.mlflow_run_id).data.metrics
    assert logged["analysis_roc_auc"] == result.metrics["roc_auc"]
    assert logged["analysis_lift"] == result.metrics["lift"]
    assert logged["analysis_tp"] == result.confusion_matrix["tp"]
    assert logged["slice_term_term_60_roc_auc"] == result.slices["term"]["term_60"]["roc_auc"]
    artifacts = {item.path for item in client.list_artifacts(result.mlflow_run_id, "analysis/plots")}
    assert artifacts == {f"analysis/plots/{name}.png" for name in PLOTS}
    local = client.download_artifacts(result.mlflow_run_id, "analysis/metrics.json")
    with open(local) as handle:
        assert json.load(handle) == storage.read_json(result.metrics_uri)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slices": ["term", "nope"]}, "slices: column 'nope' is not in the analysis set"),
        ({"target.positive_class": "no_such_class"}, "the validation set has 0 positive rows"),
    ],
)
def test_bad_input_fails_clearly_and_leaves_no_output(analyzed_run, change, message, request):
    uri = detach_mlflow_run(clone(analyzed_run, request.node.name, ("ingest", "split", "train", "analyze"),
                                  **change))
    with pytest.raises(Refused, match=message):
        run_step("analyze", uri)
    assert storage.children(Run(uri).path("analyze")) == [ERROR]  # the copied earlier result is gone too
    mlflow_run = Run(uri).result(Train).mlflow_run_id
    assert MlflowClient().get_run(mlflow_run).data.metrics == {}
    assert MlflowClient().list_artifacts(mlflow_run) == []
