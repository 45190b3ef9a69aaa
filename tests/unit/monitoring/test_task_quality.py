"""Quality from late outcomes of multiclass and regression models, against scikit-learn, on real models of the
bundled task data (wine cultivars, diabetes progression); and the spec keys of each task's verdict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlpipe.core import spec
from mlpipe.core.tasks import RULES, Task
from mlpipe.monitoring.task_quality import breach_bound, task_quality
from tests.fixtures.tasks import TASKS

WINDOWS = ("2026-11-18", "2026-11-19", "2026-11-20")
CLASSES = ["cultivar_a", "cultivar_b", "cultivar_c"]
OUTPUTS = {Task.MULTICLASS: [f"probability_{name}" for name in CLASSES], Task.REGRESSION: ["score"]}


def windowed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` in three consecutive windows, listed last window first (sorting is the module's job)."""
    window = np.array(WINDOWS)[np.arange(len(frame)) * len(WINDOWS) // len(frame)]
    return frame.assign(window=window).iloc[::-1].reset_index(drop=True)


def wine() -> pd.DataFrame:
    """A logistic regression's class probabilities of the wines and each wine's class (its index in CLASSES)."""
    data = pd.read_csv(TASKS / "wine.csv")
    features = data.drop(columns=["wine_id", "cultivar"])
    y = data["cultivar"].map(CLASSES.index).to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=1000)).fit(features, y)
    probabilities = pd.DataFrame(model.predict_proba(features), columns=OUTPUTS[Task.MULTICLASS])
    return windowed(probabilities.assign(label=y))


def diabetes() -> pd.DataFrame:
    """A linear regression's predicted progression of the patients and the actual one."""
    data = pd.read_csv(TASKS / "diabetes.csv")
    features = data.drop(columns=["patient_id", "target"]).assign(sex=(data["sex"] == "male").astype(int))
    model = LinearRegression().fit(features, data["target"])
    return windowed(pd.DataFrame({"score": model.predict(features), "label": data["target"].astype(float)}))


@pytest.fixture(scope="module", name="joined")
def joined_fixture() -> dict[Task, pd.DataFrame]:
    return {Task.MULTICLASS: wine(), Task.REGRESSION: diabetes()}


def sklearn_metrics(task: Task, rows: pd.DataFrame) -> dict[str, float]:
    """What the module should find of ``rows``, by scikit-learn and numpy."""
    if task == Task.MULTICLASS:
        probabilities, y = rows[OUTPUTS[task]].to_numpy(), rows["label"].to_numpy()
        return {"rows": len(rows), "log_loss": skm.log_loss(y, probabilities, labels=[0, 1, 2]),
                "accuracy": skm.accuracy_score(y, probabilities.argmax(axis=1))}
    predicted, y = rows["score"].to_numpy(), rows["label"].to_numpy()
    return {"rows": len(rows), "mean_actual": y.mean(), "mean_predicted": predicted.mean(),
            "rmse": skm.root_mean_squared_error(y, predicted), "mae": skm.mean_absolute_error(y, predicted),
            "mean_error": (predicted - y).mean()}


def judged(task: Task, rows: pd.DataFrame, champion: float | None = None, min_labels: int = 100,
           max_metric_drop: float | None = 0.1, maximum: float | None = None) -> dict:
    return task_quality(task, rows, OUTPUTS[task], champion, min_labels, max_metric_drop, maximum)


def shuffled(rows: pd.DataFrame) -> pd.DataFrame:
    """The same predictions with the outcomes dealt to other rows (a model that no longer knows anything)."""
    return rows.assign(label=np.random.default_rng(7).permutation(rows["label"].to_numpy()))


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.REGRESSION])
def test_overall_and_window_metrics_match_sklearn(joined, task):
    rows = joined[task]
    got = judged(task, rows)
    assert got["overall"] == pytest.approx(sklearn_metrics(task, rows), abs=1e-6)
    assert [window["window"] for window in got["windows"]] == list(WINDOWS)
    for window in got["windows"]:
        expected = sklearn_metrics(task, rows[rows["window"] == window["window"]])
        assert {key: value for key, value in window.items() if key != "window"} == pytest.approx(expected, abs=1e-6)
    assert sum(window["rows"] for window in got["windows"]) == len(rows)


def test_a_sensible_model_scores_sensibly(joined):
    assert judged(Task.MULTICLASS, joined[Task.MULTICLASS])["overall"]["accuracy"] > 0.9  # wines are easy
    assert 40 < judged(Task.REGRESSION, joined[Task.REGRESSION])["overall"]["rmse"] < 60  # progression's sd: 77


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.REGRESSION])
def test_outcomes_worse_than_the_champion_by_more_than_the_share_are_a_breach(joined, task):
    name, label = RULES[task].headline, RULES[task].label
    champion = sklearn_metrics(task, joined[task])[name]
    honest = judged(task, joined[task], champion=champion)
    assert (honest["status"], honest["breach"], honest["reasons"]) == ("ok", False, [])
    assert honest["bound"] == pytest.approx(champion * 1.1, abs=1e-6) and honest[f"champion_{name}"] == round(
        champion, 6)
    got = judged(task, shuffled(joined[task]), champion=champion)
    value = sklearn_metrics(task, shuffled(joined[task]))[name]
    assert value > champion * 1.1 and got["overall"][name] == pytest.approx(value, abs=1e-6)
    assert (got["status"], got["breach"]) == ("breach", True)
    assert got["reasons"] == [f"{label} {got['overall'][name]:.3f} on {len(joined[task]):,} outcomes is above "
                              f"{got['bound']:.3f} (champion {champion:.3f} + 10%)"]


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.REGRESSION])
def test_a_little_worse_than_the_champion_is_within_the_share(joined, task):
    name = RULES[task].headline
    value = sklearn_metrics(task, joined[task])[name]
    assert judged(task, joined[task], champion=value / 1.09)["status"] == "ok"  # 9% worse: within 10%
    assert judged(task, joined[task], champion=value / 1.11)["status"] == "breach"  # 11% worse
    assert judged(task, joined[task], champion=value / 1.11, max_metric_drop=0.2)["status"] == "ok"


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.REGRESSION])
def test_an_absolute_maximum_breaches_whatever_the_champion(joined, task):
    name, label = RULES[task].headline, RULES[task].label
    value = sklearn_metrics(task, joined[task])[name]
    for champion in (None, value * 10):
        got = judged(task, joined[task], champion=champion, maximum=value * 0.9)
        assert got["status"] == "breach" and got["bound"] == pytest.approx(value * 0.9, abs=1e-6)
        assert got["reasons"][0].startswith(f"{label} {value:.3f} on ") and got["reasons"][0].endswith(
            f"is above {value * 0.9:.3f} (maximum {value * 0.9:.3f})")
    assert judged(task, joined[task], champion=None, maximum=value * 1.01)["status"] == "ok"
    no_bound = judged(task, shuffled(joined[task]), champion=None)
    assert (no_bound["status"], no_bound["bound"]) == ("ok", None)  # nothing to compare with: not a breach


def test_the_bound_is_the_stricter_of_the_champions_and_the_maximum():
    assert breach_bound(0.5, 0.1, 0.6) == pytest.approx(0.55)
    assert breach_bound(0.5, 0.1, 0.52) == 0.52
    assert breach_bound(None, 0.1, 0.52) == 0.52
    assert breach_bound(0.5, None, None) is None and breach_bound(None, 0.1, None) is None


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.REGRESSION])
def test_too_few_outcomes_are_not_judged(joined, task):
    rows = shuffled(joined[task]).head(40)
    got = judged(task, rows, champion=1e-3, min_labels=41)
    assert (got["status"], got["breach"], got["labels"]) == ("not_enough_labels", False, 40)
    assert got["reasons"] == ["only 40 outcomes have arrived; 41 are needed to judge the model"]
    assert judged(task, rows, champion=1e-3, min_labels=40)["status"] == "breach"


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.REGRESSION])
def test_no_outcomes_have_no_metrics_and_the_result_is_strict_json(joined, task):
    got = judged(task, joined[task].head(0), champion=np.float64(0.5))  # a numpy float, as callers may pass
    assert json.loads(json.dumps(got, allow_nan=False)) == got
    name = RULES[task].headline
    assert set(got) == {"status", "labels", f"champion_{name}", "bound", "overall", "windows", "breach", "reasons"}
    assert got["windows"] == [] and got["overall"]["rows"] == 0 and got["status"] == "not_enough_labels"
    assert {key for key, value in got["overall"].items() if value is None} == set(sklearn_metrics(
        task, joined[task])) - {"rows"}
    assert type(got[f"champion_{name}"]) is float and type(got["bound"]) is float


@pytest.mark.parametrize("task", [Task.MULTICLASS, Task.REGRESSION])
def test_one_outcome_has_every_metric(joined, task):
    got = judged(task, joined[task].head(1), min_labels=1)["overall"]
    assert got == pytest.approx(sklearn_metrics(task, joined[task].head(1)), abs=1e-6)
    assert got["rows"] == 1 and None not in got.values()


@pytest.mark.parametrize(("task", "change", "message"), [
    (Task.MULTICLASS, {"label": 3}, r"label: each multiclass outcome must be the index of one of the model's 3 "
                                    r"classes, found \['3'\]"),
    (Task.MULTICLASS, {"label": -1}, r"found \['-1'\]"),
    (Task.REGRESSION, {"label": "n/a"}, r"label: each regression outcome must be a number, found \['n/a'\]"),
    (Task.REGRESSION, {"label": float("nan")}, r"label: each regression outcome must be a number, found \['nan'\]"),
    (Task.REGRESSION, {"score": float("nan")}, r"the predictions \['score'\] must be numbers"),
])
def test_bad_outcomes_are_refused_naming_the_column(joined, task, change, message):
    rows = joined[task].head(5).astype({"label": object})
    rows.loc[2, next(iter(change))] = next(iter(change.values()))
    with pytest.raises(ValueError, match=message):
        judged(task, rows)
    with pytest.raises(ValueError, match=r"the outcomes lack the columns \['window'\]"):
        judged(task, joined[task].drop(columns="window"))


def parsed(task: str, **feedback) -> spec.Spec:
    target = {"column": "y", "task": task, **({"positive_class": 1} if task == "binary" else {})}
    return spec.parse({"name": "tasks", "data": {"source": "data.csv"}, "target": target, "id_columns": ["id"],
                       "monitoring": {"feedback": {"source": "outcomes/", **feedback}}})


@pytest.mark.parametrize(("task", "feedback", "message"), [
    ("regression", {"max_roc_auc_drop": 0.1}, "max_roc_auc_drop: for binary targets only; this one is regression"),
    ("multiclass", {"min_roc_auc": 0.7}, "min_roc_auc: for binary targets only; this one is multiclass"),
    ("binary", {"max_metric_drop": 0.2},
     "max_metric_drop: for multiclass and regression targets only; this one is binary"),
    ("binary", {"max_log_loss": 0.5}, "max_log_loss: for multiclass targets only; this one is binary"),
    ("regression", {"max_log_loss": 0.5}, "max_log_loss: for multiclass targets only; this one is regression"),
    ("multiclass", {"max_rmse": 3.0}, "max_rmse: for regression targets only; this one is multiclass"),
])
def test_feedback_keys_of_another_task_are_spec_errors_naming_them(task, feedback, message):
    with pytest.raises(spec.SpecError) as raised:
        parsed(task, **feedback)
    assert f"monitoring.feedback.{message}" in str(raised.value)


@pytest.mark.parametrize(("task", "feedback"), [
    ("binary", {"max_roc_auc_drop": 0.1, "min_roc_auc": 0.6}),
    ("multiclass", {"max_metric_drop": 0.25, "max_log_loss": 0.5}),
    ("regression", {"max_metric_drop": 0.25, "max_rmse": 40.0}),
])
def test_late_outcomes_are_judged_for_every_task_by_its_own_keys(task, feedback):
    got = parsed(task, **feedback).monitoring.feedback
    assert got.source == "outcomes/" and {key: getattr(got, key) for key in feedback} == feedback


def test_a_drop_share_may_exceed_one_but_not_go_below_zero():
    assert parsed("regression", max_metric_drop=1.5).monitoring.feedback.max_metric_drop == 1.5
    with pytest.raises(spec.SpecError, match=r"monitoring.feedback.max_metric_drop"):
        parsed("regression", max_metric_drop=-0.1)
