"""Tuning regression and multiclass models through the real steps (the task sets of ``tests/data/tasks``): trials
minimize the task's metric (RMSE, log loss) on the task's folds, are logged under that metric's name, encode the
target as train does, and train boosts with the best trial's params and round count."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow import MlflowClient
from optuna.trial import TrialState
from sklearn.model_selection import KFold, StratifiedKFold

from mlpipe.core.errors import Refused
from mlpipe.core.results import Split, Train, Tune, TunePrepare
from mlpipe.core.tasks import RULES, Task
from mlpipe.data import datasets
from mlpipe.data.features import labels, matrix, schema
from mlpipe.model.tabular import TabularModel
from mlpipe.steps import run_step
from mlpipe.steps.tune import PARENT_TAG, TRIAL_STATE_TAG, Objective, load_study
from mlpipe.store import storage
from mlpipe.store.runs import Run
from tests.fixtures.analysis import clone, replace_result, run_steps

SPLIT = ("ingest", "validate", "split", "validate_split")
FOLDS, TRIALS = 3, 6
# A small budget of short trials, on one thread so that xgboost.cv can rerun a trial bit for bit.
TUNING = {"tuning.enabled": True, "tuning.trials": TRIALS, "tuning.workers": 2, "tuning.cv_folds": FOLDS,
          "training.num_boost_round": 150, "training.early_stopping_rounds": 10, "training.params.nthread": 1}
TASKS = [Task.REGRESSION, Task.MULTICLASS]
# What a task's trials are scored by: XGBoost's metric, its name in the objective and in MLflow.
METRICS = {Task.REGRESSION: ("rmse", "RMSE", "validation_rmse"),
           Task.MULTICLASS: ("mlogloss", "log loss", "validation_log_loss")}


@pytest.fixture(scope="module", name="tuned")
def tuned_fixture(task_runs) -> dict[Task, str]:
    """Each task's trained run cloned with a small tuning budget, tuned (two workers, one after the other) and
    trained again."""
    found = {}
    for task in TASKS:
        uri = run_steps(clone(task_runs[task], f"{task}_tuned", SPLIT, **TUNING), ("tune_prepare",))
        for shard in range(2):
            run_step("tune_trials", uri, shard)
        found[task] = run_steps(uri, ("tune", "train"))
    return found


def trials(uri: str) -> list:
    return load_study(Run(uri).result(TunePrepare)).get_trials()


def part(uri: str, name: str) -> pd.DataFrame:
    return datasets.read(Run(uri).result(Split).folder(name))


@pytest.mark.parametrize("task", TASKS)
def test_the_best_trial_has_the_lowest_metric_and_train_uses_it(tuned, task):
    uri, (_, label, _) = tuned[task], METRICS[task]
    result, study = Run(uri).result(Tune), load_study(Run(uri).result(TunePrepare))
    assert not result.skipped and result.objective == f"{FOLDS}-fold cross-validated {label} on train + validation"
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert study.direction.name == "MINIMIZE" and len(complete) >= 2 and len({t.value for t in complete}) >= 2
    assert result.best_value == min(t.value for t in complete) == study.trials[result.best_trial].value
    assert result.best_rounds == study.trials[result.best_trial].user_attrs["best_iteration"] + 1

    trained = Run(uri).result(Train)
    params = MlflowClient().get_run(trained.mlflow_run_id).data.params
    assert trained.tuned and params["tuned"] == "True" and trained.round_rule == "tuned"
    assert {key: params[key] for key in result.best_params} == {key: str(v) for key, v in result.best_params.items()}
    floor = math.ceil(1 / result.best_params["eta"])  # the fewest rounds train keeps
    assert trained.num_trees == max(result.best_rounds, floor)


@pytest.mark.parametrize("task", TASKS)
def test_each_trial_is_logged_under_the_tasks_metric(tuned, task):
    uri, (_, _, logged) = tuned[task], METRICS[task]
    result, by_number = Run(uri).result(Tune), {t.number: t for t in trials(uri)}
    client = MlflowClient()
    parent = client.get_run(result.tuning_run_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.`{PARENT_TAG}` = '{result.tuning_run_id}'")
    assert sorted(int(child.data.params["trial"]) for child in children) == list(range(TRIALS))
    for child in children:
        trial = by_number[int(child.data.params["trial"])]
        assert child.data.tags[TRIAL_STATE_TAG] == trial.state.name and "validation_roc_auc" not in child.data.metrics
        if trial.state == TrialState.COMPLETE:
            assert child.data.metrics[logged] == pytest.approx(trial.value)
    assert parent.data.metrics[f"best_{logged}"] == pytest.approx(result.best_value)
    assert parent.data.params["objective"] == result.objective


@pytest.mark.parametrize("task", TASKS)
def test_the_best_trials_value_is_its_metric_cross_validated_apart_from_the_step(tuned, task):
    """xgboost.cv rerun with the best params on folds dealt here (stratified by class, or plain for regression),
    the target encoded here: the mean held-out metric at the trial's round is its value, the best of its rounds."""
    uri, (metric, _, _) = tuned[task], METRICS[task]
    spec, result = Run(uri).spec, Run(uri).result(Tune)
    best = trials(uri)[result.best_trial]
    frames = [part(uri, name) for name in ("train", "validation")]
    classes = sorted(set(frames[0][spec.target.column].astype(str))) if task == Task.MULTICLASS else None
    features = pd.concat([matrix(frame, schema(frames[0], spec)) for frame in frames], ignore_index=True)
    y = np.concatenate([labels(frame, spec, classes) for frame in frames])
    splitter = StratifiedKFold if task == Task.MULTICLASS else KFold
    folds = list(splitter(FOLDS, shuffle=True, random_state=spec.tuning.seed).split(features, y))
    params = {**spec.training.params, **best.params, "objective": RULES[task].objective, "eval_metric": metric,
              "tree_method": "hist", **({"num_class": len(classes)} if classes else {})}
    stopped = best.user_attrs["best_iteration"]
    rounds = min(spec.training.num_boost_round, stopped + 1 + spec.training.early_stopping_rounds)
    curve = xgb.cv(params, xgb.DMatrix(features, label=y, enable_categorical=True), num_boost_round=rounds,
                   folds=folds, as_pandas=False)[f"test-{metric}-mean"]
    assert best.value == pytest.approx(curve[stopped], rel=1e-9)
    assert stopped == int(np.argmin(curve))


def test_a_multiclass_trial_encodes_the_classes_as_train_does(tuned, task_runs):
    uri = tuned[Task.MULTICLASS]
    model_classes = TabularModel.load(Run(uri).result(Train).model_folder).schema["classes"]
    objective = Objective(Run(uri), 0)
    assert objective.num_class == len(model_classes)
    assert list(objective.train[1]) == list(labels(part(uri, "train"), Run(uri).spec, model_classes))
    # target.classes, when the spec lists them, is the order of the model's classes: trials use it too.
    listed = [*model_classes[1:], model_classes[0]]
    ordered = clone(task_runs[Task.MULTICLASS], "listed_classes", SPLIT, **TUNING, **{"target.classes": listed})
    encoded = Objective(Run(ordered), 0).train[1]
    assert list(encoded) == list(labels(part(ordered, "train"), Run(ordered).spec, listed))
    assert list(encoded) != list(objective.train[1])


def test_a_multiclass_class_with_fewer_rows_than_folds_is_refused_naming_its_count(task_runs):
    uri = clone(task_runs[Task.MULTICLASS], "few_of_a_class", SPLIT, **TUNING)
    column = Run(uri).spec.target.column
    rarest = part(uri, "train")[column].value_counts().idxmin()
    for name, keep in (("train", FOLDS - 2), ("validation", 1)):  # FOLDS - 1 rows of it in train + validation
        frame = part(uri, name)
        smaller = Run(uri).path("split", f"{name}_few.parquet")
        storage.write_parquet(pd.concat([frame[frame[column] == rarest].head(keep), frame[frame[column] != rarest]]),
                              smaller)
        replace_result(uri, "split", **{name: smaller})
    assert not run_step("tune_prepare", uri)["skipped"]
    with pytest.raises(Refused) as refused:
        run_step("tune_trials", uri, shard=0)
    assert str(refused.value) == (f"tuning.cv_folds: {FOLDS} stratified folds need at least {FOLDS} rows of each "
                                  f"class in train + validation; the rarest class has {FOLDS - 1}")


@pytest.mark.parametrize("task", TASKS)
def test_auto_tuning_counts_the_rarest_class_or_for_regression_only_the_rows(task_runs, task):
    uri = clone(task_runs[task], f"{task}_auto", SPLIT, **{"tuning.enabled": "auto"})
    train, spec = part(uri, "train"), Run(uri).spec
    prepared = run_step("tune_prepare", uri)
    if task == Task.MULTICLASS:
        rarest = int(train[spec.target.column].value_counts().min())
        assert prepared["skipped"] and prepared["reason"] == spec.tuning.skip_reason(len(train), rarest)
        assert f"{rarest} in its rarest class" in prepared["reason"]
    else:
        assert prepared["skipped"] and prepared["reason"] == (
            f"tuning.enabled auto: the train split has {len(train)} rows: too few to rank params (needs 500)")
