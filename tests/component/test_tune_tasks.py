"""Tuning regression and multiclass models for real: each task's metric (RMSE, log loss), minimized, on the task's
folds; train then boosts with the best trial's params and round count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from mlflow import MlflowClient
from sklearn.model_selection import KFold

from mlpipe.core.errors import Refused
from mlpipe.core.results import Train, Tune, TunePrepare
from mlpipe.core.settings import OPTUNA_DIR, OPTUNA_STORAGE
from mlpipe.core.spec import Tuning
from mlpipe.core.tasks import Task
from mlpipe.model.booster import booster_params, tuned_training
from mlpipe.steps import run_step
from mlpipe.steps.tune import GOALS, PARENT_TAG, Objective, cv_folds, load_study
from mlpipe.store.runs import Run
from tests.fixtures.analysis import clone, run_steps

SPLIT = ("ingest", "validate", "split", "validate_split")
TUNING = {"tuning.enabled": True, "tuning.trials": 6, "tuning.workers": 2, "tuning.cv_folds": 3,
          "training.num_boost_round": 150, "training.early_stopping_rounds": 10}
TASKS = [Task.REGRESSION, Task.MULTICLASS]


@pytest.fixture(scope="module", name="tuned")
def tuned_fixture(task_runs, tmp_path_factory) -> dict[Task, str]:
    """Each task's trained run cloned with a small tuning budget, tuned (both shards) and trained again."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(OPTUNA_DIR, str(tmp_path_factory.mktemp("optuna")))
        patch.delenv(OPTUNA_STORAGE, raising=False)
        found = {}
        for task in TASKS:
            uri = run_steps(clone(task_runs[task], f"{task}_tuned", SPLIT, **TUNING), ("tune_prepare",))
            for shard in range(2):
                run_step("tune_trials", uri, shard)
            found[task] = run_steps(uri, ("tune", "train"))
        yield found


@pytest.mark.parametrize("task", TASKS)
def test_the_best_trial_minimizes_the_tasks_metric_and_train_uses_it(tuned, task):
    uri, goal = tuned[task], GOALS[task]
    result = Run(uri).result(Tune)
    assert not result.skipped and result.objective == f"3-fold cross-validated {goal.label} on train + validation"
    study = load_study(Run(uri).result(TunePrepare))
    complete = [t for t in study.get_trials() if t.value is not None]
    assert study.direction.name == "MINIMIZE" and len(complete) >= 2
    assert result.best_value == min(t.value for t in complete)  # lower is better
    trained = Run(uri).result(Train)
    params = MlflowClient().get_run(trained.mlflow_run_id).data.params
    assert trained.tuned and {key: params[key] for key in result.best_params} == {
        key: str(value) for key, value in result.best_params.items()}
    floor = int(np.ceil(1 / float(result.best_params.get("eta", run_eta(uri)))))
    assert trained.num_trees == max(result.best_rounds, floor)  # the best trial's rounds, at least 1 / eta


def run_eta(uri: str) -> float:
    return float(Run(uri).spec.training.params.get("eta", 0.3))


@pytest.mark.parametrize("task", TASKS)
def test_each_trial_is_logged_under_the_tasks_metric(tuned, task):
    uri, goal = tuned[task], GOALS[task]
    parent = Run(uri).result(Tune).tuning_run_id
    client = MlflowClient()
    children = client.search_runs([client.get_run(parent).info.experiment_id],
                                  filter_string=f"tags.`{PARENT_TAG}` = '{parent}'")
    assert len(children) == 6 and all(f"validation_{goal.logged}" in c.data.metrics for c in children
                                       if c.data.tags["mlpipe.trial_state"] == "COMPLETE")
    assert client.get_run(parent).data.metrics[f"best_validation_{goal.logged}"] == Run(uri).result(Tune).best_value


def test_a_regression_trials_value_is_the_mean_rmse_of_plain_folds(tuned):
    uri = tuned[Task.REGRESSION]
    run, result = Run(uri), Run(uri).result(Tune)
    objective = Objective(run, 0)
    rows = len(objective.train[1]) + len(objective.validation[1])
    folds = list(KFold(3, shuffle=True, random_state=run.spec.tuning.seed).split(np.zeros(rows)))
    assert [list(test) for _, test in objective.folds.indices] == [list(test) for _, test in folds]
    params = {"nthread": 1, **booster_params(tuned_training(run.spec.training, result.best_params), None, "cpu",
                                             Task.REGRESSION)}
    history = xgb.cv(params, objective.folds.data, num_boost_round=result.best_rounds, folds=folds, as_pandas=False)
    assert history["test-rmse-mean"][-1] == pytest.approx(result.best_value, rel=1e-3)


def test_multiclass_folds_need_every_class_in_each_fold():
    frame = pd.DataFrame({"x": np.arange(30.0)})
    y = np.array([0] * 14 + [1] * 14 + [2] * 2)  # class 2: two rows
    with pytest.raises(Refused) as refused:
        cv_folds((frame.iloc[:20], y[:20]), (frame.iloc[20:], y[20:]), Tuning(), 3, Task.MULTICLASS)
    assert str(refused.value) == ("tuning.cv_folds: 3 stratified folds need at least 3 rows of each class in "
                                  "train + validation; the rarer class has 2")
    regression = cv_folds((frame.iloc[:20], y[:20] * 1.5), (frame.iloc[20:], y[20:] * 1.5), Tuning(), 3,
                          Task.REGRESSION)  # plain folds: no class to keep in proportion
    assert sorted(int(i) for _, test in regression.indices for i in test) == list(range(30))
