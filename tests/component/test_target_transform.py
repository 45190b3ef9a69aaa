"""A regression target learned through ``target.transform: log`` (the diabetes set of ``tests/data/tasks``, whose
target is above 0), through the real steps: the booster learns the log, and every prediction, metric, baseline,
tuning trial and server answer is back in the target's units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn import metrics as skm

from mlpipe.core import spec, uris
from mlpipe.core.errors import Refused
from mlpipe.core.results import Analyze, Register, Split, Train, Tune
from mlpipe.core.tasks import Task
from mlpipe.data import datasets
from mlpipe.data.features import labels, matrix
from mlpipe.data.profile import write_profile
from mlpipe.model.baseline import Baseline
from mlpipe.model.tabular import TabularModel
from mlpipe.model.transformed import evaluation
from mlpipe.serving.loader import ServedModel
from mlpipe.steps import run_step
from mlpipe.store import runs
from mlpipe.store.runs import Run, StepNotFinished
from tests.fixtures.analysis import clone, run_steps
from tests.fixtures.tasks import TRAINED, task_spec

LOG = {"target.transform": "log"}
TUNING = {"tuning.enabled": True, "tuning.trials": 3, "tuning.workers": 1, "tuning.cv_folds": 3,
          "training.num_boost_round": 150, "training.early_stopping_rounds": 10}


@pytest.fixture(scope="module", name="logged")
def logged_fixture(module_env, tmp_path_factory) -> str:
    """The diabetes spec with ``target.transform: log``, trained, analyzed and registered."""
    loaded = spec.with_overrides(task_spec(tmp_path_factory.mktemp("log"), Task.REGRESSION), LOG)
    return run_steps(runs.start(loaded, "log_target"), (*TRAINED, "analyze", "register"))


def split_part(uri: str, name: str) -> tuple[TabularModel, pd.DataFrame, np.ndarray]:
    """The run's model, one part of its split and that part's target in its own units."""
    run = Run(uri)
    frame = datasets.read(run.result(Split).folder(name))
    return TabularModel.load(run.result(Train).model_folder), frame, labels(frame, run.spec)


def test_the_booster_learns_the_log_and_the_model_predicts_in_the_targets_units(logged):
    model, frame, y = split_part(logged, "validation")
    raw = model.booster.inplace_predict(matrix(frame, model.schema), iteration_range=model.tree_range())
    assert model.schema["transform"] == "log"
    assert np.allclose(model.scores(frame), np.exp(raw), rtol=1e-6)
    assert raw.max() < np.log(y.max()) + 1 < 10  # log units: the target itself runs to 346
    assert 0.5 * y.mean() < model.scores(frame).mean() < 1.5 * y.mean()


def test_validation_metrics_and_early_stopping_are_in_the_targets_units(logged):
    model, frame, y = split_part(logged, "validation")
    trained = Run(logged).result(Train)
    predicted = model.scores(frame).astype("float64")
    assert trained.validation["rmse"] == pytest.approx(skm.root_mean_squared_error(y, predicted), abs=1e-3)
    assert trained.validation["mae"] == pytest.approx(skm.mean_absolute_error(y, predicted), abs=1e-3)
    baseline = Baseline.load(trained.baseline).scores(frame)
    assert trained.validation["baseline_rmse"] == pytest.approx(skm.root_mean_squared_error(y, baseline), abs=1e-6)
    assert np.corrcoef(np.log(baseline), np.log(predicted))[0, 1] > 0.8  # the ridge learned the log too
    assert int(model.booster.attributes()["best_iteration"]) + 1 == model.tree_range()[1]
    assert float(model.booster.attributes()["best_score"]) == pytest.approx(trained.validation["rmse"], abs=1e-3)


def test_analysis_and_the_gate_measure_in_the_targets_units(logged):
    model, frame, y = split_part(logged, "analysis")
    analyzed, registered = Run(logged).result(Analyze), Run(logged).result(Register)
    assert analyzed.metrics["rmse"] == pytest.approx(skm.root_mean_squared_error(y, model.scores(frame)), abs=1e-4)
    assert analyzed.metrics["r2"] == pytest.approx(skm.r2_score(y, model.scores(frame)), abs=1e-4)
    baseline = Baseline.load(Run(logged).result(Train).baseline).scores(frame)
    lift = skm.root_mean_squared_error(y, baseline) - analyzed.metrics["rmse"]  # on this small set, the ridge wins
    assert analyzed.metrics["lift"] == pytest.approx(lift, abs=1e-4)
    assert registered.reasons == [f"lift over baseline {lift:.4f} < thresholds.min_lift_over_baseline 0.0"]
    assert not registered.promoted and registered.champion_version is None


def test_the_model_server_answers_in_the_targets_units(logged):
    model, frame, _ = split_part(logged, "analysis")
    served = ServedModel.build("diabetes_progression", 1, "champion", model, {})
    records = frame[model.schema["columns"]].head(20).to_dict(orient="records")
    answers = [answer["score"] for answer in served.predictions(records)]
    assert np.allclose(answers, model.scores(frame.head(20)), rtol=1e-5)


def test_tuning_trials_are_scored_in_the_targets_units(logged):
    uri = run_steps(clone(logged, "log_tuned", ("ingest", "validate", "split", "validate_split"), **TUNING),
                    ("tune_prepare",))
    run_step("tune_trials", uri, 0)
    tuned = run_steps(uri, ("tune",))
    best = Run(tuned).result(Tune)
    validation_rmse = Run(logged).result(Train).validation["rmse"]
    assert 0.5 * validation_rmse < best.best_value < 1.5 * validation_rmse  # a log-scale RMSE would be ~0.4
    assert "RMSE" in best.objective


def test_a_target_the_log_cannot_take_is_refused_by_train_naming_it_and_nothing_is_trained(module_env, tmp_path):
    loaded = task_spec(tmp_path, Task.REGRESSION)
    source = uris.local_path(loaded.data.source)
    frame = pd.read_csv(source)
    frame.loc[frame.index % 3 == 0, "target"] = 0.0
    frame.to_csv(source, index=False)
    write_profile(loaded)
    uri = run_steps(runs.start(spec.with_overrides(loaded, LOG), "zero_target"),
                    ("ingest", "validate", "split", "validate_split"))
    with pytest.raises(Refused) as refused:
        run_step("train", uri)
    assert str(refused.value) == ("target.transform log: every value of target.column 'target' must be above 0; "
                                  "the train split holds 0")
    with pytest.raises(StepNotFinished):
        Run(uri).result(Train)


def test_the_custom_metric_xgboost_reads_is_the_metric_of_the_undone_values():
    rng = np.random.default_rng(0)
    y = rng.uniform(1, 100, 500)
    x = np.column_stack([np.log(y) + rng.normal(0, 0.3, 500), rng.normal(size=500)])
    data = xgb.DMatrix(x, label=np.log(y))
    history: dict = {}
    params, metric = evaluation({"objective": "reg:squarederror", "eval_metric": ["mae", "rmse"]}, "log")
    booster = xgb.train(params, data, 5, evals=[(data, "v")], evals_result=history, custom_metric=metric,
                        verbose_eval=False)
    predicted = np.exp(booster.predict(data))
    assert list(history["v"]) == ["mae", "rmse"]
    assert history["v"]["rmse"][-1] == pytest.approx(skm.root_mean_squared_error(y, predicted), rel=1e-5)
    assert history["v"]["mae"][-1] == pytest.approx(skm.mean_absolute_error(y, predicted), rel=1e-5)
