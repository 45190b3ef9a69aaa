"""What a dataset covers: its target over every row, batch by batch, and the span of its date and time columns."""

from __future__ import annotations

import json
from datetime import date, datetime

import pandas as pd
import pytest

from mlpipe.core import spec, uris
from mlpipe.data.coverage import Coverage, coverage
from mlpipe.data.datasets import PartWriter


def write_parts(folder, frames: list[pd.DataFrame]) -> str:
    with PartWriter(uris.normalize(folder)) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.folder


def loans_spec(**target) -> spec.Spec:
    return spec.parse({"name": "loans", "data": {"source": "file:///x.csv", "batch_rows": 3},
                       "target": {"column": "status", **target}})


def test_a_binary_target_and_the_date_columns_over_every_part(tmp_path):
    first = pd.DataFrame({"status": ["bad", "good", "good"], "amount": [1.0, 2.0, 3.0],
                          "issued": [date(2021, 3, 1), date(2020, 1, 15), None],
                          "seen": pd.to_datetime(["2022-05-01 10:00", None, "2022-04-01 09:30"])})
    second = pd.DataFrame({"status": ["good", "bad", "bad", "good", "good"], "amount": [4.0] * 5,
                           "issued": [date(2019, 7, 4), None, date(2021, 12, 31), None, None],
                           "seen": pd.to_datetime([None] * 5)})
    found = coverage(write_parts(tmp_path / "snapshot", [first, second]), loans_spec(positive_class="bad"))
    assert found.rows == 8
    assert found.target["positive_rate"] == pytest.approx(3 / 8)
    assert found.dates == {"issued": ("2019-07-04", "2021-12-31"),
                           "seen": (datetime(2022, 4, 1, 9, 30).isoformat(), datetime(2022, 5, 1, 10).isoformat())}
    assert Coverage.from_json(json.loads(json.dumps(found.to_json()))) == found  # as the model card keeps it


def test_no_date_column_and_the_other_tasks_targets(tmp_path):
    frame = pd.DataFrame({"status": ["a", "b", "b", "c", "b"], "value": [1.0, 2.0, 4.0, 8.0, 5.0],
                          "when": ["2020-01-01"] * 5})  # text, not a date: the data does not say it is one
    folder = write_parts(tmp_path / "snapshot", [frame])
    shares = coverage(folder, loans_spec(task="multiclass")).target["class_shares"]
    assert shares == pytest.approx({"a": 0.2, "b": 0.6, "c": 0.2})
    regression = spec.parse({"name": "loans", "data": {"source": "file:///x.csv"},
                             "target": {"column": "value", "task": "regression"}})
    found = coverage(folder, regression)
    assert (found.rows, found.target["mean"], found.dates) == (5, pytest.approx(4.0), {})
