"""validate and validate_split in batches: the merged GX result equals one run on the whole data.

The data is ingested and checked 700 rows at a time (15 batches of the bundled 9,857 loans); a
single real GX run on the whole snapshot is the reference the merge must reproduce: successes,
counts, percentages, unexpected values, observed values and the failure lines.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from mlpipe.core.errors import Refused
from mlpipe.core.names import PARTS
from mlpipe.core.results import Ingest
from mlpipe.data import datasets
from mlpipe.data.features import labels
from mlpipe.steps import run_step
from mlpipe.steps import validate as steps_validate
from mlpipe.store import storage
from mlpipe.store.runs import Run
from mlpipe.validation import failures, merge, suites

BATCH_ROWS = 700


def broken(loans: pd.DataFrame) -> pd.DataFrame:
    """The loans with nulls, out-of-range values, unseen categories and many more bad loans, spread out."""
    copy = loans.copy()
    copy.loc[copy.sample(frac=0.1, random_state=0).index, "revol_util"] = None  # 10% nulls: too many
    copy["delinq_2yrs"] = copy["delinq_2yrs"].astype("Int64")  # written as integers, nulls as empty cells
    copy.loc[2100:2120, "delinq_2yrs"] = None  # int64 in most batches, float64 in one
    copy.loc[[5, 3000, 9000], "annual_inc"] = 5e7
    copy.loc[copy.sample(frac=0.02, random_state=1).index, "sub_grade"] = "Z9"  # 2%: above the 1% tolerance
    copy.loc[copy.sample(frac=0.05, random_state=2).index, "Class"] = "bad"  # rate ~10%: above 8%
    copy.loc[4000, "Class"] = "unknown"
    copy["int_rate"] = copy["int_rate"].astype(object)
    copy.loc[6000, "int_rate"] = "13%"  # a text column: every value has the wrong type, the range check errs
    return copy


def clustered(loans: pd.DataFrame) -> pd.DataFrame:
    """The loans with problems that fail single batches but not the whole data: GX's ``mostly`` and the rate."""
    copy = loans.sort_values("Class", kind="stable").reset_index(drop=True)  # the bad loans come first
    copy.loc[:29, "sub_grade"] = "Z9"  # 0.3% of all rows, 4.3% of the first batch
    copy.loc[:299, "revol_util"] = None  # 3% of all rows, 43% of the first batch
    return copy


@pytest.fixture
def batched_run(start_run, tmp_path, loans):
    """Ingest ``mutate(loans)`` in a run that reads, checks and writes ``BATCH_ROWS`` rows at a time."""
    def make(mutate=None) -> str:
        path = tmp_path / "loans.csv"
        (mutate(loans) if mutate else loans).to_csv(path, index=False)
        run = start_run(**{"data.source": path.as_uri(), "data.batch_rows": BATCH_ROWS})
        run_step("ingest", run)
        return run

    return make


def whole_snapshot_result(run: Run, profiled: dict):
    """The reference: one GX run of the validate suite on the whole snapshot, read at once."""
    snapshot = datasets.read(run.result(Ingest).snapshot)
    frame = suites.batch_frame(snapshot, [name for name, entry in profiled.items() if "categories" in entry])
    frame[suites.LABEL] = labels(snapshot, run.spec)
    return suites.run_suite("whole", frame, suites.data_suite(run.spec, profiled))


def by_expectation(result) -> dict[str, dict]:
    """Success and result of each expectation, as JSON, by expectation type and arguments."""
    found = {}
    for item in result.to_json_dict()["results"]:
        config = item["expectation_config"]
        kwargs = {name: value for name, value in config["kwargs"].items() if name != "batch_id"}
        found[json.dumps([config["type"], kwargs], sort_keys=True)] = {"success": item["success"],
                                                                      "result": item["result"]}
    return found


def assert_same(merged, whole) -> None:
    """``merged`` reports what ``whole`` reports; observed means may differ by rounding (1e-9)."""
    merged_items, whole_items = by_expectation(merged), by_expectation(whole)
    assert merged_items.keys() == whole_items.keys()
    for key, expected in whole_items.items():
        found = merged_items[key]
        if isinstance(expected["result"].get("observed_value"), float):
            assert found["result"].pop("observed_value") == pytest.approx(
                expected["result"].pop("observed_value"), abs=1e-9), key
        assert found == expected, key
    assert (merged.success, merged.statistics) == (whole.success, whole.statistics)
    assert failures.failures(merged) == failures.failures(whole)


@pytest.mark.parametrize(("mutate", "failed"), [(None, 0), (clustered, 0), (broken, 7)],
                         ids=["bundled", "clustered-problems", "broken"])
def test_merged_batches_equal_one_run_on_the_whole_snapshot(batched_run, mutate, failed):
    run = Run(batched_run(mutate))
    profiled = suites.profiled_columns(run.spec.validation.profile)
    checks = suites.data_suite(run.spec, profiled)
    batches = list(steps_validate.snapshot_batches(run, profiled, []))
    assert [len(frame) for frame in batches] == [BATCH_ROWS] * 14 + [57]
    merged = merge.run_batches("whole", batches, checks)
    whole = whole_snapshot_result(run, profiled)
    assert whole.statistics["unsuccessful_expectations"] == failed
    assert_same(merged, whole)
    if mutate is broken:  # the type check saw different dtypes in different batches
        assert {frame["delinq_2yrs"].dtype.name for frame in batches} == {"int64", "float64"}
    if mutate is clustered:  # each of these failed in the first batch alone
        first = suites.run_suite("first", batches[0], checks).statistics
        assert first["unsuccessful_expectations"] >= 3


def test_validate_step_reports_the_whole_snapshot_result(batched_run):
    run = batched_run(broken)
    with pytest.raises(Refused) as caught:
        run_step("validate", run)
    profiled = suites.profiled_columns(Run(run).spec.validation.profile)
    whole = whole_snapshot_result(Run(run), profiled)
    suites.render_html(whole)  # as the step does before listing failures: values as plain JSON
    text = failures.TextInNumbers(suites.data_suite(Run(run).spec, profiled))
    list(text.counted([datasets.read(Run(run).result(Ingest).snapshot)]))  # in the whole snapshot at once
    assert str(caught.value).splitlines()[1:] == failures.failures(whole, text)
    assert "int_rate: expect_column_values_to_be_in_type_list (observed: 0.01% of rows unexpected, " \
           "e.g. ['13%' (1 row)] / expected: type_list=numeric)" in str(caught.value)
    saved = storage.read_json(Run(run).path("validate", "validation.json"))
    assert saved["statistics"] == whole.statistics
    assert "revol_util: expect_column_values_to_not_be_null (observed: 10.00% of rows unexpected, e.g. [None" \
           in str(caught.value)


def test_split_rates_are_those_of_the_whole_parts(batched_run):
    run = batched_run()
    split = run_step("split", run)
    result = run_step("validate_split", run)
    rate = labels(datasets.read(Run(run).result(Ingest).snapshot), Run(run).spec).mean()
    assert result["positive_rate"] == round(rate, 6)
    observed = {item["expectation_config"]["meta"]["subject"].rsplit(" ", 1)[1]: item["result"]["observed_value"]
                for item in storage.read_json(result["result"])["results"]}
    for part in PARTS:
        rows = datasets.read(split[part])
        assert math.ceil(len(rows) / BATCH_ROWS) > 1  # several batches per part
        assert observed[part] == pytest.approx(labels(rows, Run(run).spec).mean(), abs=1e-9)


def test_checks_the_merge_does_not_know_are_refused():
    gxe = suites.expectations()
    checks = [gxe.ExpectColumnMaxToBeBetween(column="x", max_value=1)]
    with pytest.raises(Refused, match="expect_column_max_to_be_between cannot be merged"):
        merge.run_batches("suite", [pd.DataFrame({"x": [0]})], checks)


def gx_rows(monkeypatch) -> list[int]:
    """The rows of each GX run from now on (GX still runs: this only records its frames' lengths)."""
    checked: list[int] = []

    def recorded(name, frame, checks):
        checked.append(len(frame))
        return suites.run_suite(name, frame, checks)

    monkeypatch.setattr(merge, "run_suite", recorded)
    return checked


@pytest.mark.parametrize("mutate", [None, broken], ids=["bundled", "broken"])
def test_gx_runs_only_where_its_verdict_can_differ(batched_run, monkeypatch, mutate):
    run = Run(batched_run(mutate))
    profiled = suites.profiled_columns(run.spec.validation.profile)
    batches = list(steps_validate.snapshot_batches(run, profiled, []))
    checked = gx_rows(monkeypatch)
    merge.run_batches("whole", batches, suites.data_suite(run.spec, profiled))
    if mutate is None:  # one row of the first batch: its columns and dtypes; every row is in range and known
        assert checked == [1]
    else:  # the first unexpected values of each check (GX keeps 20), and a row of each batch with new dtypes
        assert len(checked) < len(batches) / 2
        assert sum(checked) < sum(len(frame) for frame in batches) / 10


def odd_batches() -> list[pd.DataFrame]:
    """Small batches of every dtype the checks treat differently: nullable integers, text cells (pandas strings
    and Python objects, one a number), values out of range, unknown and missing, and a 0/1 column to average."""
    return [
        pd.DataFrame({"n": pd.array([1, None, 5], dtype="Int64"), "s": pd.array(["a", None, "b"], dtype="str"),
                      "o": ["a", "b", None], "flag": [1, 0, 1], "part": ["x", "y", "x"]}),
        pd.DataFrame({"n": pd.array([7, 2, 3], dtype="Int64"), "s": pd.array(["c", "a", "a"], dtype="str"),
                      "o": ["a", 3, "zz"], "flag": [0, 0, 1], "part": ["y", "y", "x"]}),
        pd.DataFrame({"n": pd.array([2, None, -1], dtype="Int64"), "s": pd.array(["a", "b", None], dtype="str"),
                      "o": ["b", None, "a"], "flag": [1, 1, 0], "part": ["x", "x", "y"]}),
        pd.DataFrame({"n": pd.array([2, 3, 4], dtype="Int64"), "s": pd.array(["a", "b", "a"], dtype="str"),
                      "o": ["a", "b", "a"], "flag": [0, 1, 1], "part": ["y", "x", "x"]}),
    ]


def odd_checks() -> list:
    gxe = suites.expectations()
    from great_expectations.expectations.row_conditions import Column

    return [gxe.ExpectColumnValuesToBeBetween(column="n", min_value=0, max_value=4),
            gxe.ExpectColumnValuesToBeBetween(column="n", min_value=0, max_value=4, strict_min=True, mostly=0.5),
            gxe.ExpectColumnValuesToNotBeNull(column="n", mostly=0.8),
            gxe.ExpectColumnValuesToBeInSet(column="s", value_set=["a", "b"], mostly=0.9),
            gxe.ExpectColumnValuesToBeInTypeList(column="s", type_list=suites.TYPE_LISTS["string"]),
            gxe.ExpectColumnValuesToBeInTypeList(column="o", type_list=suites.TYPE_LISTS["string"]),
            gxe.ExpectColumnValuesToBeInSet(column="o", value_set=["a", "b"]),
            gxe.ExpectColumnValuesToNotBeNull(column="o"),
            gxe.ExpectColumnToExist(column="flag"),
            gxe.ExpectColumnMeanToBeBetween(column="flag", min_value=0.4, max_value=0.7),
            gxe.ExpectColumnMeanToBeBetween(column="flag", min_value=0.6, max_value=1,
                                            row_condition=Column("part") == "x")]


def test_every_kind_of_column_merges_to_one_run_on_all_rows():
    batches = odd_batches()
    merged = merge.run_batches("odd", batches, odd_checks())
    assert_same(merged, suites.run_suite("odd", pd.concat(batches, ignore_index=True), odd_checks()))


def test_the_unexpected_values_of_the_batches_are_those_of_one_run(batched_run):
    """What batch scoring reports (``value_issues``): each check's unexpected values in all the batches so far."""
    run = Run(batched_run(broken))
    profiled = suites.profiled_columns(run.spec.validation.profile)
    checks = suites.data_suite(run.spec, profiled)
    batches, batch_run = list(steps_validate.snapshot_batches(run, profiled, [])), merge.BatchRun("whole", checks)
    for frame in batches:
        batch_run.add(frame)
    counted = {merge._key(config): count for config, count in batch_run.unexpected_counts()}
    whole = whole_snapshot_result(run, profiled)
    assert counted == {merge._key(item.expectation_config): item.result["unexpected_count"]
                       for item in whole.results if (item.result or {}).get("unexpected_count")}
