"""The fairness check of regression and multiclass models: the spec keys, the measure per group, the gate's decision
and the DAG's doc. A regression model is compared on its mean prediction per group, a multiclass model on the share
of each group's rows predicted ``thresholds.fairness.favorable_class``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipe.core import spec
from mlpipe.core.tasks import Task
from mlpipe.orchestration.docs import training_doc
from mlpipe.registry.promotion import decide, side_by_side, task_scorecard
from tests.unit.registry.test_promotion_tasks import card, task_spec

BY_SEX = {"column": "sex", "min_group_rows": 30}
BY_REGION = {"column": "group", "favorable_class": "a", "min_group_rows": 30}


def regression_card(groups: dict[str, tuple[int, float]], **extra) -> dict:
    """A regression scorecard (RMSE 9, lift 1) whose fairness groups are ``group -> (rows, mean prediction)``."""
    return {**card(9.0), **extra,
            "fairness": {group: {"rows": rows, "mean_prediction": mean} for group, (rows, mean) in groups.items()}}


# --- the spec --------------------------------------------------------------------------------------------------

def parsed(target: dict, fairness: dict) -> spec.Spec:
    return spec.parse({"name": "fair", "data": {"source": "data.csv"}, "target": {"column": "y", **target},
                       "thresholds": {"fairness": fairness}})


@pytest.mark.parametrize(("target", "fairness", "message"), [
    ({"task": "multiclass"}, {"column": "g"},
     "thresholds.fairness.favorable_class: a multiclass target needs the class that is the good outcome for the "
     "person (e.g. an approval grade)"),
    ({"task": "multiclass", "classes": ["silver", "bronze"]}, {"column": "g", "favorable_class": "gold"},
     "thresholds.fairness.favorable_class: 'gold' is not one of target.classes ['silver', 'bronze']"),
    ({"task": "regression"}, {"column": "g", "favorable_class": "gold"},
     "thresholds.fairness.favorable_class: for multiclass targets only; this one is regression"),
    ({"positive_class": "bad"}, {"column": "g", "favorable_class": "good"},
     "thresholds.fairness.favorable_class: for multiclass targets only; this one is binary"),
])
def test_a_favorable_class_that_does_not_fit_the_task_is_a_spec_error_naming_it(target, fairness, message):
    with pytest.raises(spec.SpecError) as raised:
        parsed(target, fairness)
    assert message in str(raised.value)


@pytest.mark.parametrize(("target", "fairness"), [
    ({"task": "regression"}, {"column": "g"}),
    ({"task": "multiclass"}, {"column": "g", "favorable_class": "gold"}),  # the classes are the train split's
    ({"task": "multiclass", "classes": [1, 2, 3]}, {"column": "g", "favorable_class": 1}),  # compared as text
])
def test_every_task_takes_a_fairness_check(target, fairness):
    assert parsed(target, fairness).thresholds.fairness.column == "g"


# --- regression: the mean prediction per group -----------------------------------------------------------------

def test_a_regression_model_with_similar_group_means_is_promoted_with_the_ratio():
    decision = decide(task_spec(Task.REGRESSION, fairness=BY_SEX),
                      regression_card({"female": (50, 150.0), "male": (60, 140.0)}), None)
    assert decision.promote and decision.notes == []
    assert decision.reasons == ["no champion yet and the spec thresholds pass (rmse 9.0000, lift 1.0000, "
                                "disparate impact on sex 0.9333 >= 0.8)"]


def test_unequal_group_means_fail_naming_both_groups_and_a_small_group_is_noted():
    groups = {"female": (50, 150.0), "male": (60, 100.0), "other": (29, -10.0)}  # too small even to be negative
    decision = decide(task_spec(Task.REGRESSION, fairness=BY_SEX), regression_card(groups), None)
    assert not decision.promote
    assert decision.reasons == ["fairness: disparate impact on sex 0.6667 < thresholds.fairness.min_disparate_impact "
                                "0.8: mean prediction of group sex=male 100.0000 vs group sex=female 150.0000"]
    assert decision.notes == ["fairness: group sex=other not compared: 29 rows "
                              "(< thresholds.fairness.min_group_rows 30)"]


def test_fewer_than_two_big_enough_groups_are_not_compared_and_said_so():
    decision = decide(task_spec(Task.REGRESSION, fairness=BY_SEX),
                      regression_card({"female": (50, 150.0), "male": (10, 1.0)}), None)
    assert decision.promote
    assert decision.notes == ["fairness: group sex=male not compared: 10 rows "
                              "(< thresholds.fairness.min_group_rows 30)",
                              "fairness: fewer than two groups of 'sex' are big enough to compare"]


@pytest.mark.parametrize("mean", [0.0, -3.5])
def test_a_group_mean_of_zero_or_less_fails_the_gate_saying_why_and_what_to_do(mean):
    gated = task_spec(Task.REGRESSION, fairness=BY_SEX)
    unfair = regression_card({"female": (50, 12.0), "male": (60, mean)})
    decision = decide(gated, unfair, None)
    assert not decision.promote
    assert decision.reasons == [f"fairness: mean prediction of group sex=male {mean:.4f} <= 0: a ratio of group means "
                                "needs positive predictions; drop thresholds.fairness for a target whose predictions "
                                "can be 0 or less"]
    assert side_by_side(gated, unfair, None)["metrics"]["disparate_impact"] == {"challenger": None, "champion": None}


def test_the_regression_scorecard_measures_each_groups_mean_prediction():
    kept = pd.DataFrame({"region": ["north"] * 4, "sex": ["female", "male", "female", None]})
    predicted = np.array([100.0, 80.0, 140.0, 50.0], dtype="float32")
    found = task_scorecard(task_spec(Task.REGRESSION, fairness=BY_SEX), kept, np.full(4, 100.0), predicted, 40.0)
    assert found["fairness"] == {"<missing>": {"rows": 1, "mean_prediction": 50.0},
                                 "female": {"rows": 2, "mean_prediction": 120.0},
                                 "male": {"rows": 1, "mean_prediction": 80.0}}
    assert "classes" not in found


def test_side_by_side_lays_out_both_models_group_means_under_the_measures_name():
    gated = task_spec(Task.REGRESSION, fairness=BY_SEX)
    challenger = regression_card({"female": (50, 150.0), "male": (60, 140.0)})
    champion = {"version": 2, **regression_card({"female": (50, 160.0), "male": (60, 120.0)})}
    laid_out = side_by_side(gated, challenger, champion)
    assert laid_out["metrics"]["disparate_impact"] == {"challenger": round(140 / 150, 6), "champion": 0.75}
    assert laid_out["fairness"] == {"column": "sex", "measure": "mean prediction", "groups": {
        "female": {"rows": 50, "challenger": 150.0, "champion": 160.0},
        "male": {"rows": 60, "challenger": 140.0, "champion": 120.0}}}


# --- multiclass: the share of each group predicted the favorable class -----------------------------------------

def probabilities(predicted: list[int]) -> np.ndarray:
    """Class probabilities (3 classes) whose most probable class is ``predicted``, row by row."""
    out = np.full((len(predicted), 3), 0.2, dtype="float32")
    out[np.arange(len(predicted)), predicted] = 0.6
    return out


def multiclass_card(classes: list[str]) -> dict:
    """The scorecard of a model of ``classes`` that predicts the first class for half of the 60 rows of group ``x``
    and for a quarter of the 40 rows of group ``y`` (favorable class: ``a``)."""
    predicted = [0] * 30 + [1] * 30 + [0] * 10 + [2] * 30
    kept = pd.DataFrame({"region": ["north"] * 100, "group": ["x"] * 60 + ["y"] * 40})
    gated = task_spec(Task.MULTICLASS, fairness=BY_REGION)
    return {**task_scorecard(gated, kept, np.array(predicted), probabilities(predicted), 1.0, classes), "trees": 50}


def test_the_multiclass_scorecard_measures_each_groups_share_of_the_favorable_class():
    found = multiclass_card(["a", "b", "c"])
    assert found["classes"] == ["a", "b", "c"]
    assert found["fairness"] == {"x": {"rows": 60, "favorable_rate": 0.5}, "y": {"rows": 40, "favorable_rate": 0.25}}


def test_a_multiclass_model_favoring_one_group_fails_naming_the_measure_and_both_groups():
    decision = decide(task_spec(Task.MULTICLASS, fairness=BY_REGION), multiclass_card(["a", "b", "c"]), None)
    assert not decision.promote
    assert decision.reasons == ["fairness: disparate impact on group 0.5000 < thresholds.fairness.min_disparate_impact "
                                "0.8: favorable-class rate of group group=y 0.2500 vs group group=x 0.5000"]


def test_a_multiclass_model_within_the_bound_is_promoted():
    lenient = task_spec(Task.MULTICLASS, fairness={**BY_REGION, "min_disparate_impact": 0.5})
    decision = decide(lenient, multiclass_card(["a", "b", "c"]), None)
    assert decision.promote
    assert decision.reasons[0].endswith(", disparate impact on group 0.5000 >= 0.5)")


def test_a_favorable_class_the_model_does_not_predict_fails_the_gate_naming_its_classes():
    gated = task_spec(Task.MULTICLASS, fairness=BY_REGION)
    found = multiclass_card(["b", "c", "d"])
    assert found["fairness"] is None
    decision = decide(gated, found, None)
    assert not decision.promote
    assert decision.reasons == ["fairness: thresholds.fairness.favorable_class 'a' is not one of the model's classes "
                                "['b', 'c', 'd']: no favorable-class rate to compare"]


# --- the training DAG's doc ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("target", "fairness", "text"), [
    ({"positive_class": "bad"}, {"column": "grade"},
     "; disparate impact of the approval rate (score < decision threshold) across `grade` ≥ 0.8 (groups of ≥ 30 rows)"),
    ({"task": "multiclass"}, {"column": "region", "favorable_class": "A", "min_group_rows": 50},
     "; disparate impact of the favorable-class rate (predicted `A`) across `region` ≥ 0.8 (groups of ≥ 50 rows)"),
    ({"task": "regression"}, {"column": "sex", "min_disparate_impact": 0.75},
     "; disparate impact of the mean prediction across `sex` ≥ 0.75 (groups of ≥ 30 rows)"),
])
def test_the_training_dags_doc_says_what_the_fairness_check_compares(target, fairness, text):
    assert text in training_doc(parsed(target, fairness), "local")
    unfair = spec.with_overrides(parsed(target, fairness), {"thresholds.fairness": None})
    assert "disparate impact" not in training_doc(unfair, "local")
