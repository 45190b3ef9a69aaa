"""labels(): the target as each task's model learns it; a target the task cannot learn names its column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipe.core import spec
from mlpipe.core.errors import Refused
from mlpipe.data.features import labels
from mlpipe.steps.split import strata


def target(task: str, **more) -> spec.Spec:
    return spec.parse({"name": "tasks", "data": {"source": "data.csv"},
                       "target": {"column": "y", "task": task, **more}})


def test_binary_labels_are_one_for_the_positive_class():
    frame = pd.DataFrame({"y": ["bad", "good", "bad", None]})
    assert labels(frame, target("binary", positive_class="bad")).tolist() == [1, 0, 1, 0]


def test_multiclass_labels_are_class_indexes_in_the_given_order():
    frame = pd.DataFrame({"y": [3, 1, 2, 3]})  # integers compared as text
    assert labels(frame, target("multiclass"), ["3", "2", "1"]).tolist() == [0, 2, 1, 0]
    assert labels(frame, target("multiclass", classes=[1, 2, 3])).tolist() == [2, 0, 1, 2]


def test_regression_labels_are_the_numbers():
    frame = pd.DataFrame({"y": ["1.5", "2", "-3e2"]})  # numbers read as text by a CSV with one bad cell fixed
    assert labels(frame, target("regression")).tolist() == [1.5, 2.0, -300.0]


@pytest.mark.parametrize(
    ("task", "values", "classes", "message"),
    [
        ("regression", [1.0, "high", 3.0], None,
         "target.column 'y': a regression target must be numeric, got 'high'"),
        ("regression", [1.0, None, 3.0], None, "target.column 'y': 1 rows have no value"),
        ("multiclass", ["a", "d", "b", "e"], ["a", "b", "c"],
         "target.column 'y': classes ['d', 'e'] are not among the model's classes ['a', 'b', 'c']"),
        ("multiclass", ["a", None], ["a", "b"], "target.column 'y': 1 rows have no value"),
        ("multiclass", ["a", "b"], None, "target.column 'y': the classes of a multiclass target are not known here"),
    ],
)
def test_a_target_the_task_cannot_learn_is_refused_naming_the_column(task, values, classes, message):
    with pytest.raises(Refused) as raised:
        labels(pd.DataFrame({"y": pd.Series(values, dtype=object)}), target(task), classes)
    assert str(raised.value) == message


def test_regression_strata_are_the_first_batchs_deciles_kept_for_later_batches():
    first = pd.DataFrame({"y": np.arange(100.0)})
    bins, edges = strata(first, target("regression"), None)
    assert np.bincount(bins).tolist() == [10] * 10
    later, kept = strata(pd.DataFrame({"y": [-5.0, 45.0, 1000.0]}), target("regression"), edges)
    assert kept is edges and later.tolist() == [0, 4, 9]


def test_multiclass_strata_are_the_classes_as_text():
    found, edges = strata(pd.DataFrame({"y": [2, 1, 2]}), target("multiclass"), None)
    assert found.tolist() == ["2", "1", "2"] and edges is None
