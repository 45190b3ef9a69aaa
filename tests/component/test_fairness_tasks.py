"""The fairness check of the promotion gate for regression and multiclass models, through the real register step.

Regression: the diabetes spec's mean prediction per ``sex``. Multiclass: the wine spec, its data given a ``region``
(hills: alcohol of 13% or more, the cultivar_a wines) that is no feature of the model, and cultivar_a's share of
each region's predictions. The expected group values are computed here from the trained model and the analysis
split, not taken from the gate.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlpipe.core import spec, uris
from mlpipe.core.results import Register, Split, Train
from mlpipe.core.tasks import Task
from mlpipe.data import datasets
from mlpipe.data.profile import write_profile
from mlpipe.model.tabular import TabularModel
from mlpipe.registry.names import COMPARISON_TAG
from mlpipe.steps import run_step
from mlpipe.store import runs
from mlpipe.store.runs import Run
from tests.fixtures.analysis import clone, run_steps
from tests.fixtures.tasks import TRAINED, task_spec

ANALYZED = (*TRAINED, "analyze")
# Any sane model passes the rest of the gate: these tests are about fairness.
LENIENT = {"thresholds.min_lift_over_baseline": -1e9}
WINE_CLASSES = ["cultivar_a", "cultivar_b", "cultivar_c"]


@pytest.fixture(scope="module", name="analyzed")
def analyzed_fixture(task_runs, tmp_path_factory) -> dict[Task, str]:
    """Task -> a trained and analyzed run: the diabetes spec (regression), the wine spec with regions (multiclass)."""
    folder = tmp_path_factory.mktemp("regions")
    wine = task_spec(folder, Task.MULTICLASS)
    source = uris.local_path(wine.data.source)
    frame = pd.read_csv(source)
    frame.assign(region=np.where(frame["alcohol"] >= 13, "hills", "plains")).to_csv(source, index=False)
    wine = spec.with_overrides(wine, {"features.exclude": ["region"]})
    write_profile(wine)
    return {Task.REGRESSION: run_steps(clone(task_runs[Task.REGRESSION], "diabetes_analyzed", TRAINED), ("analyze",)),
            Task.MULTICLASS: run_steps(runs.start(wine, "wine_analyzed"), ANALYZED)}


def expected_groups(uri: str, column: str, favorable: str | None = None) -> dict[str, float]:
    """Per group of ``column`` of the run's analysis split: the mean prediction, or the share predicted
    ``favorable``, of the run's trained model."""
    model = TabularModel.load(Run(uri).result(Train).model_folder)
    frame = datasets.read(Run(uri).result(Split).analysis)
    scores = model.scores(frame).astype("float64")
    if favorable is not None:
        scores = np.asarray(model.schema["classes"])[scores.argmax(axis=1)] == favorable
    return pd.Series(scores).groupby(frame[column].astype(str).to_numpy()).mean().to_dict()


def registered(source: str, model: str, fairness: dict) -> Register:
    """The register step's result for a clone of the analyzed run ``source``, gated with ``fairness``, as a version
    of a model of its own."""
    uri = clone(source, model, ANALYZED, model_name=model, **LENIENT, **{"thresholds.fairness": fairness})
    run_step("register", uri)
    return Run(uri).result(Register)


def compared(result: Register) -> dict:
    """The gate's side-by-side comparison as the model version's tag records it."""
    return json.loads(MlflowClient().get_model_version(result.model_name, str(result.version)).tags[COMPARISON_TAG])


def ratio(groups: dict[str, float]) -> float:
    return min(groups.values()) / max(groups.values())


def test_a_regression_model_handing_each_sex_a_similar_mean_prediction_is_promoted(analyzed):
    groups = expected_groups(analyzed[Task.REGRESSION], "sex")
    result = registered(analyzed[Task.REGRESSION], "fair_progression", {"column": "sex"})
    assert ratio(groups) >= 0.8 and result.promoted and result.champion_version == result.version
    assert result.reasons[0].endswith(f", disparate impact on sex {ratio(groups):.4f} >= 0.8)")
    side = compared(result)["fairness"]
    assert side["column"] == "sex" and side["measure"] == "mean prediction"
    assert {group: stats["challenger"] for group, stats in side["groups"].items()} == pytest.approx(groups, abs=1e-5)
    assert result.metrics["disparate_impact"]["challenger"] == pytest.approx(ratio(groups), abs=1e-5)


def test_a_regression_model_below_the_bound_is_not_promoted_naming_both_groups(analyzed):
    groups = expected_groups(analyzed[Task.REGRESSION], "sex")
    low, high = min(groups, key=groups.get), max(groups, key=groups.get)
    result = registered(analyzed[Task.REGRESSION], "unfair_progression", {"column": "sex", "min_disparate_impact": 1.0})
    assert not result.promoted and result.champion_version is None
    assert result.reasons == [f"fairness: disparate impact on sex {ratio(groups):.4f} < thresholds.fairness."
                              f"min_disparate_impact 1.0: mean prediction of group sex={low} {groups[low]:.4f} vs "
                              f"group sex={high} {groups[high]:.4f}"]
    assert "champion" not in MlflowClient().get_registered_model("unfair_progression").aliases


def test_a_multiclass_model_predicting_the_favorable_class_for_one_region_is_not_promoted(analyzed):
    groups = expected_groups(analyzed[Task.MULTICLASS], "region", favorable="cultivar_a")
    result = registered(analyzed[Task.MULTICLASS], "unfair_cultivar",
                        {"column": "region", "favorable_class": "cultivar_a", "min_group_rows": 5})
    assert ratio(groups) < 0.8 and not result.promoted and result.champion_version is None
    assert result.reasons == [f"fairness: disparate impact on region {ratio(groups):.4f} < thresholds.fairness."
                              f"min_disparate_impact 0.8: favorable-class rate of group region=plains "
                              f"{groups['plains']:.4f} vs group region=hills {groups['hills']:.4f}"]
    side = compared(result)["fairness"]
    assert side["measure"] == "favorable-class rate"
    assert {group: stats["challenger"] for group, stats in side["groups"].items()} == pytest.approx(groups, abs=1e-6)
    assert "champion" not in MlflowClient().get_registered_model("unfair_cultivar").aliases


def test_a_favorable_class_the_model_does_not_predict_fails_the_gate_naming_the_classes(analyzed):
    result = registered(analyzed[Task.MULTICLASS], "unknown_cultivar",
                        {"column": "region", "favorable_class": "cultivar_z", "min_group_rows": 5})
    assert not result.promoted and result.champion_version is None
    assert result.reasons == [f"fairness: thresholds.fairness.favorable_class 'cultivar_z' is not one of the model's "
                              f"classes {WINE_CLASSES}: no favorable-class rate to compare"]
    assert result.metrics["disparate_impact"] == {"challenger": None, "champion": None}
