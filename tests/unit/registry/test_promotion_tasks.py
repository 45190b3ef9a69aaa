"""The promotion gate of multiclass and regression models: the task's headline metric, lower is better."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipe.core import spec
from mlpipe.core.tasks import Task
from mlpipe.registry.promotion import MIN_SLICE_ROWS, decide, side_by_side, task_scorecard


def task_spec(task: Task, **thresholds) -> spec.Spec:
    return spec.parse({"name": "gated", "data": {"source": "data.csv"}, "target": {"column": "y", "task": task},
                       "slices": ["region"], "thresholds": {"min_lift_over_baseline": -1.0, **thresholds}})


def card(rmse: float, baseline: float = 10.0, chance: float = 20.0, slices: dict | None = None) -> dict:
    """A regression scorecard as :func:`task_scorecard` makes them, with its trees."""
    return {"rmse": rmse, "baseline_rmse": baseline, "lift": round(baseline - rmse, 6), "chance": chance,
            "slices": {"region": slices or {"north": {"rows": 100, "rmse": rmse}}}, "fairness": None, "trees": 50}


def test_a_first_model_within_the_bound_is_promoted_and_the_reason_names_its_metric():
    decision = decide(task_spec(Task.REGRESSION, max_rmse=9.5), card(9.0), None)
    assert decision.promote
    assert decision.reasons == ["no champion yet and the spec thresholds pass (rmse 9.0000, lift 1.0000)"]


def test_the_bound_and_the_lift_are_met_the_tasks_way():
    decision = decide(task_spec(Task.REGRESSION, max_rmse=8.0, min_lift_over_baseline=0.5), card(9.8), None)
    assert not decision.promote
    assert decision.reasons == ["analysis rmse 9.8000 > thresholds.max_rmse 8.0",
                                "lift over baseline 0.2000 < thresholds.min_lift_over_baseline 0.5"]


def test_a_challenger_must_beat_the_champion_by_the_margin_with_lower_being_better():
    gated = task_spec(Task.REGRESSION, min_improvement_over_champion=0.5)
    champion = {"version": 3, **card(9.0)}
    assert decide(gated, card(8.4), champion).promote
    decision = decide(gated, card(8.7), champion)
    assert decision.reasons == ["rmse 8.7000 vs champion version 3 9.0000 on this run's analysis set: improvement "
                                "+0.3000 < thresholds.min_improvement_over_champion 0.5"]


def test_a_slice_worse_than_the_champions_by_more_than_the_share_fails_and_a_small_one_is_noted():
    gated = task_spec(Task.REGRESSION, max_slice_drop=0.1)
    ours = {"north": {"rows": 100, "rmse": 11.5}, "south": {"rows": MIN_SLICE_ROWS - 1, "rmse": 30.0}}
    theirs = {"north": {"rows": 100, "rmse": 10.0}, "south": {"rows": MIN_SLICE_ROWS - 1, "rmse": 5.0}}
    decision = decide(gated, card(8.0, slices=ours), {"version": 1, **card(9.0, slices=theirs)})
    assert decision.reasons == ["slice region=north: rmse 11.5000 vs champion 10.0000 "
                                "(drop 0.1500 > thresholds.max_slice_drop 0.1)"]
    assert decision.notes == [f"slice region=south not compared: {MIN_SLICE_ROWS - 1} rows (needs {MIN_SLICE_ROWS})"]
    layout = side_by_side(gated, card(8.0, slices=ours), {"version": 1, **card(9.0, slices=theirs)})
    assert set(layout["metrics"]) == {"rmse", "lift", "disparate_impact"}  # no decision threshold


def test_a_model_no_better_than_chance_is_never_promoted_not_even_forced():
    decision = decide(task_spec(Task.REGRESSION), card(20.0, chance=20.0), None, force=True)
    assert not decision.promote
    assert decision.reasons[0] == ("sanity: analysis rmse 20.0000 is no better than 20.0000, that of predicting "
                                   "the mean for every row")


def test_the_multiclass_scorecard_measures_log_loss_per_slice_and_against_the_class_shares():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200)
    predicted = np.full((200, 3), 0.1)
    predicted[np.arange(200), y] = 0.8  # confident and right
    kept = pd.DataFrame({"region": np.where(np.arange(200) < 120, "north", "south")})
    found = task_scorecard(task_spec(Task.MULTICLASS), kept, y, predicted, baseline=0.5)
    assert found["log_loss"] == pytest.approx(-np.log(0.8), abs=1e-6)
    assert found["lift"] == pytest.approx(0.5 + np.log(0.8), abs=1e-6)
    shares = np.bincount(y) / 200
    assert found["chance"] == pytest.approx(-np.mean(np.log(shares[y])), abs=1e-6)
    assert {key: value["rows"] for key, value in found["slices"]["region"].items()} == {"north": 120, "south": 80}
    decision = decide(task_spec(Task.MULTICLASS, max_log_loss=0.1), {**found, "trees": 9}, None)
    assert decision.reasons == [f"analysis log_loss {found['log_loss']:.4f} > thresholds.max_log_loss 0.1"]
