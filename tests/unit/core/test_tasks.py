"""target.task: a spec says what its model predicts; keys that make no sense for the task name themselves."""

from __future__ import annotations

import numpy as np
import pytest

from mlpipe.core import spec
from mlpipe.core.tasks import RULES, TRANSFORMS, Task, Transform, learned, lift, undone
from mlpipe.model.booster import booster_params


def parsed(target: dict, **sections) -> spec.Spec:
    return spec.parse({"name": "tasks", "data": {"source": "data.csv"}, "target": target, **sections})


def test_a_target_with_a_positive_class_is_binary_as_before():
    assert parsed({"column": "Class", "positive_class": "bad"}).target.task == Task.BINARY


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_tasks_need_no_positive_class(task):
    target = parsed({"column": "y", "task": task}).target
    assert (target.task, target.positive_class, target.classes) == (Task(task), None, None)


@pytest.mark.parametrize(
    ("target", "sections", "message"),
    [
        ({"column": "y"}, {}, "target: a binary target needs positive_class (or set task: multiclass or regression)"),
        ({"column": "y", "task": "regression", "positive_class": 1}, {},
         "target: positive_class is for binary targets; this one is regression"),
        ({"column": "y", "task": "binary", "positive_class": 1, "classes": [0, 1]}, {},
         "target: classes is for multiclass targets; this one is binary"),
        ({"column": "y", "task": "multiclass", "classes": ["a", "b", "a"]}, {},
         "target: classes lists a class twice: ['a', 'b', 'a']"),
        ({"column": "y", "task": "multiclass", "classes": ["a"]}, {}, "target.classes: List should have at least 2"),
        ({"column": "y", "task": "ordinal"}, {}, "target.task: Input should be 'binary', 'multiclass' or 'regression'"),
        ({"column": "y", "task": "regression"}, {"validation": {"positive_rate": [0.1, 0.2]}},
         "validation.positive_rate: a regression target has no positive class"),
        ({"column": "y", "task": "multiclass"}, {"training": {"scale_pos_weight": 3}},
         "training.scale_pos_weight: a multiclass target has no positive class"),
        ({"column": "y", "task": "regression"}, {"training": {"params": {"objective": "multi:softprob"}}},
         "training.params.objective: 'multi:softprob' does not fit a regression target; use one of reg:squarederror"),
        ({"column": "y", "task": "multiclass", "transform": "log"}, {},
         "target: transform is for regression targets; this one is multiclass"),
        ({"column": "y", "task": "regression", "transform": "sqrt"}, {},
         "target.transform: Input should be 'log' or 'log1p'"),
        ({"column": "y", "task": "regression", "transform": "log"},
         {"training": {"params": {"objective": "reg:gamma"}}},
         "training.params.objective: 'reg:gamma' needs the target in its own units, and target.transform log learns "
         "its log; use one of reg:squarederror, reg:absoluteerror, reg:pseudohubererror"),
    ],
)
def test_keys_that_do_not_fit_the_task_are_spec_errors_naming_them(target, sections, message):
    with pytest.raises(spec.SpecError, match=None) as raised:
        parsed(target, **sections)
    assert message in str(raised.value)


@pytest.mark.parametrize("task", list(Task))
def test_booster_params_take_the_tasks_objective_and_round_metrics(task):
    training = parsed({"column": "y", "task": task, **({"positive_class": 1} if task == Task.BINARY else {})},
                      training={"params": {"eval_metric": "mape"}}).training
    params = booster_params(training, 2.0 if task == Task.BINARY else None, "cpu", task, 3)
    assert params["objective"] == RULES[task].objective
    assert params["eval_metric"] == [*RULES[task].round_metrics, "mape"]  # the spec's last decides early stopping
    assert ("scale_pos_weight" in params, "num_class" in params) == (task == Task.BINARY, task == Task.MULTICLASS)
    if task == Task.MULTICLASS:
        assert params["num_class"] == 3


def test_a_spec_objective_that_fits_the_task_is_kept():
    training = parsed({"column": "y", "task": "regression"},
                      training={"params": {"objective": "reg:absoluteerror"}}).training
    assert booster_params(training, None, "cpu", Task.REGRESSION)["objective"] == "reg:absoluteerror"


@pytest.mark.parametrize(("task", "model", "baseline", "better"),
                         [(Task.BINARY, 0.8, 0.7, True), (Task.MULTICLASS, 0.3, 0.4, True),
                          (Task.REGRESSION, 12.0, 10.0, False)])
def test_lift_is_positive_when_the_model_is_better(task, model, baseline, better):
    assert (lift(task, model, baseline) > 0) is better
    assert abs(lift(task, model, baseline)) == pytest.approx(abs(model - baseline))


@pytest.mark.parametrize("transform", list(Transform))
def test_a_transform_is_undone_exactly_and_keeps_the_order_of_values(transform):
    values = np.array([TRANSFORMS[transform].above + 1e-3, 0.5, 3.0, 250.0, 1e6])
    assert np.all(np.diff(learned(transform, values)) > 0)
    assert np.allclose(undone(transform, learned(transform, values)), values, rtol=1e-12)
    assert learned(None, values) is values and undone(None, values) is values


def test_a_transformed_target_cannot_measure_a_metric_xgboost_would_take_on_the_log():
    from mlpipe.core.errors import Refused
    from mlpipe.model.transformed import evaluation

    with pytest.raises(Refused) as refused:
        evaluation({"eval_metric": ["rmse", "rmsle"]}, Transform.LOG)
    assert str(refused.value) == ("training.params.eval_metric: ['rmsle'] cannot be measured in the target's units "
                                  "with target.transform log; use rmse, mae, mape")
