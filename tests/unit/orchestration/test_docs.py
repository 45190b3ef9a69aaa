"""The monitoring DAG's doc_md states the quality rule of the spec's task."""

from __future__ import annotations

import pytest

from mlpipe.core import spec
from mlpipe.orchestration.docs import monitoring_doc

TARGETS = {"binary": {"column": "y", "positive_class": 1}, "multiclass": {"column": "y", "task": "multiclass"},
           "regression": {"column": "y", "task": "regression"}}


def with_feedback(task: str) -> spec.Spec:
    return spec.parse({"name": "docs", "data": {"source": "data.csv"}, "target": TARGETS[task], "id_columns": ["id"],
                       "monitoring": {"feedback": {"source": "outcomes.csv"}}})


@pytest.mark.parametrize(("task", "measured", "rule"), [
    ("binary", "ROC AUC, PR AUC and calibration per day", "or ROC AUC on outcomes 0.05 below the champion's"),
    ("multiclass", "log loss and accuracy per day", "or log loss on outcomes 10% above the champion's"),
    ("regression", "RMSE, MAE and the mean error per day", "or RMSE on outcomes 10% above the champion's"),
])
def test_the_monitoring_doc_names_the_tasks_quality_metrics_and_breach_rule(task, measured, rule):
    doc = monitoring_doc(with_feedback(task))
    assert f"with the champion's batch predictions: {measured}." in " ".join(doc.split())
    assert rule in doc


def test_without_a_feedback_source_the_doc_says_quality_is_not_judged():
    doc = monitoring_doc(spec.parse({"name": "docs", "data": {"source": "data.csv"}, "target": TARGETS["regression"]}))
    assert "so quality is not judged" in doc and "on outcomes" not in doc
