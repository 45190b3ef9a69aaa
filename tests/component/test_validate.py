"""validate and validate_split: real Great Expectations suites on the bundled loans and broken copies of them.

Every failing case checks the exact set of failed expectations named in the Refused
message, and that the failed step left its GX result and report but no result.json.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest

from mlpipe.core import uris
from mlpipe.core.errors import Refused
from mlpipe.core.results import Ingest
from mlpipe.core.spec import SpecError
from mlpipe.data import datasets
from mlpipe.steps import run_step
from mlpipe.store import storage
from mlpipe.store.runs import RESULT, Run

RATE = "positive rate (Class == 'bad')"


@pytest.fixture
def ingested(start_run, tmp_path):
    """Start a run on ``frame`` (the bundled file when None), ingest it, and return the run URI."""
    def make(frame: pd.DataFrame | None = None, run_id: str = "test_run", **overrides) -> str:
        if frame is not None:
            path = tmp_path / f"{run_id}.csv"
            frame.to_csv(path, index=False)
            overrides["data.source"] = path.as_uri()
        run = start_run(run_id, **overrides)
        run_step("ingest", run)
        return run

    return make


def failures(run: str, step: str) -> set[tuple[str, str]]:
    """Run a step that must fail; check what it left; return its failed (subject, expectation) pairs."""
    with pytest.raises(Refused) as caught:
        run_step(step, run)
    folder = Run(run).path(step)
    assert storage.read_json(uris.join(folder, "validation.json"))["success"] is False
    report = storage.read_bytes(uris.join(folder, "report.html")).decode()
    assert '<i class="fas fa-times text-danger" aria-hidden="true"></i> Failed' in report
    assert not storage.exists(uris.join(folder, RESULT))
    header, *lines = str(caught.value).splitlines()
    failed = int(header.removeprefix(f"{step}: ").split(" ")[0])
    assert failed >= len(lines) > 0  # checks on a missing column are summed up by one line
    pairs = set()
    for line in lines:
        subject, described = line.split(": ", 1)
        expectation, details = described.split(" ", 1)
        assert details.startswith("(observed: ") and " / expected: " in details
        pairs.add((subject, expectation))
    return pairs


def resampled(loans: pd.DataFrame, positive_share: float, rows: int = 1000) -> pd.DataFrame:
    """``rows`` loans of which ``positive_share`` are bad (sampled with a fixed seed)."""
    bad = loans[loans["Class"] == "bad"].sample(round(rows * positive_share), random_state=0)
    good = loans[loans["Class"] == "good"].sample(rows - len(bad), random_state=0)
    return pd.concat([bad, good]).sample(frac=1, random_state=0)


def test_bundled_data_passes_every_kind_of_check(ingested, loan_spec, tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    run = ingested()
    result = run_step("validate", run)
    assert result["success"] is True and result["failed"] == 0
    assert result["profile"] == loan_spec.validation.profile
    assert result["data_version"] == Run(run).result(Ingest).data_version
    validation = storage.read_json(result["result"])
    assert validation["success"] is True
    statistics = validation["statistics"]
    assert result["evaluated"] == len(validation["results"]) == statistics["evaluated_expectations"]
    kinds = {(item["expectation_config"]["type"], item["expectation_config"]["kwargs"].get("column"))
             for item in validation["results"]}
    assert {("expect_column_values_to_be_in_type_list", "int_rate"),
            ("expect_column_values_to_be_in_type_list", "addr_state"),
            ("expect_column_values_to_not_be_null", "revol_util"),
            ("expect_column_values_to_be_between", "annual_inc"),
            ("expect_column_values_to_be_in_set", "sub_grade"),
            ("expect_column_values_to_be_in_set", "Class"),
            ("expect_column_to_exist", "emp_length"),
            ("expect_column_mean_to_be_between", "_mlpipe_positive")} <= kinds
    # hashed PII gets only type and null checks: its values depend on the key
    assert {kind for kind, column in kinds if column == "addr_state"} == {
        "expect_column_to_exist", "expect_column_values_to_be_in_type_list",
        "expect_column_values_to_not_be_null"}
    report = storage.read_bytes(result["report"]).decode()
    assert '<i class="fas fa-check-circle text-success" aria-hidden="true"></i> Succeeded' in report
    assert "annual_inc" in report and ">-96000.0</span> and less than or equal to" in report
    assert os.listdir(".") == []  # the GX context is in memory: nothing in the working directory


def _numeric_as_text(loans: pd.DataFrame) -> pd.DataFrame:
    return loans.assign(int_rate=loans["int_rate"].map("{}%".format))


def _drop_column(loans: pd.DataFrame) -> pd.DataFrame:
    return loans.drop(columns=["revol_util"])


def _out_of_range(loans: pd.DataFrame) -> pd.DataFrame:
    broken = loans.copy()
    broken.loc[:4, "annual_inc"] = 5e7  # the reference maximum is 960,000
    return broken


def _new_categories(share: float):
    def mutate(loans: pd.DataFrame) -> pd.DataFrame:
        broken = loans.copy()
        broken.loc[: round(len(loans) * share) - 1, "sub_grade"] = "Z9"
        return broken

    return mutate


def _more_nulls(loans: pd.DataFrame) -> pd.DataFrame:
    broken = loans.copy()
    broken.loc[broken.sample(frac=0.1, random_state=0).index, "revol_util"] = None
    return broken


def _unknown_target(loans: pd.DataFrame) -> pd.DataFrame:
    broken = loans.copy()
    broken.loc[3, "Class"] = "unknown"
    return broken


@pytest.mark.parametrize(("mutate", "expected"), [
    pytest.param(_numeric_as_text, {("int_rate", "expect_column_values_to_be_in_type_list"),
                                    ("int_rate", "expect_column_values_to_be_between")},
                 id="numeric-as-strings"),
    pytest.param(lambda loans: resampled(loans, 0.3), {(f"{RATE} of the snapshot",
                                                        "expect_column_mean_to_be_between")}, id="rate-30%"),
    pytest.param(_drop_column, {("revol_util", "expect_column_to_exist")}, id="missing-column"),
    pytest.param(_out_of_range, {("annual_inc", "expect_column_values_to_be_between")}, id="out-of-range"),
    pytest.param(_new_categories(0.03), {("sub_grade", "expect_column_values_to_be_in_set")},
                 id="3%-new-categories"),
    pytest.param(_more_nulls, {("revol_util", "expect_column_values_to_not_be_null")}, id="10%-nulls"),
    pytest.param(_unknown_target, {("Class", "expect_column_values_to_be_in_set")}, id="unknown-target"),
])
def test_bad_data_fails_naming_each_failed_expectation(ingested, loans, mutate, expected):
    assert failures(ingested(mutate(loans)), "validate") == expected


def test_failure_message_shows_observed_and_expected_values(ingested, loans):
    with pytest.raises(Refused) as caught:
        run_step("validate", ingested(resampled(loans, 0.3)))
    assert (f"{RATE} of the snapshot: expect_column_mean_to_be_between "
            "(observed: 0.3 / expected: max_value=0.08, min_value=0.03)") in str(caught.value)
    with pytest.raises(Refused) as caught:
        run_step("validate", ingested(_numeric_as_text(loans), run_id="text"))
    assert "int_rate: expect_column_values_to_be_in_type_list (observed: 100.00% of rows unexpected, " \
           "e.g. ['13.99%'" in str(caught.value)


def test_new_categories_within_tolerance_pass(ingested, loans):
    assert run_step("validate", ingested(_new_categories(0.005)(loans)))["success"] is True


@pytest.mark.parametrize(("share", "passes"), [(0.5, True), (0.3, False)])
def test_positive_rate_bounds_without_a_profile(ingested, loans, share, passes):
    run = ingested(resampled(loans, share), **{"validation.profile": None,
                                               "validation.positive_rate": [0.45, 0.55]})
    if passes:
        result = run_step("validate", run)
        # spec-derived checks only: 6 required columns exist, the target has no nulls, the rate
        assert (result["evaluated"], result["profile"]) == (8, None)
    else:
        assert failures(run, "validate") == {(f"{RATE} of the snapshot", "expect_column_mean_to_be_between")}


def test_spec_columns_are_required_without_a_profile(ingested, loans):
    # ingest refuses a spec naming a column the data lacks; validate still expects them (a snapshot made
    # before the spec named the column)
    with pytest.raises(SpecError, match=r"slices: 'term' is not a column of file://.*test_run\.csv"):
        ingested(loans.drop(columns=["term"]), **{"validation.profile": None})
    run = ingested(loans.drop(columns=["term"]), run_id="older",
                   **{"validation.profile": None, "slices": ["verification_status"]})
    storage.write_json(uris.join(run, "spec.json"),
                       {**storage.read_json(uris.join(run, "spec.json")), "slices": ["term"]})
    assert failures(run, "validate") == {("term", "expect_column_to_exist")}


def test_split_rates_pass_on_a_stratified_split(ingested):
    run = ingested()
    run_step("split", run)
    result = run_step("validate_split", run)
    assert (result["success"], result["evaluated"], result["failed"]) == (True, 3, 0)
    assert result["positive_rate"] == pytest.approx(517 / 9857, abs=1e-6)
    observed = [item["result"]["observed_value"] for item in storage.read_json(result["result"])["results"]]
    assert all(abs(rate - 517 / 9857) <= 0.01 for rate in observed)


def test_split_rates_fail_on_a_skewed_part(ingested):
    run = ingested()
    split = run_step("split", run)
    analysis = datasets.read(split["analysis"])
    extra_bad = analysis[analysis["Class"] == "bad"]
    skewed = storage.write_parquet(pd.concat([analysis, extra_bad]), Run(run).path("split", "skewed.parquet"))
    storage.write_json(Run(run).path("split", RESULT), {**split, "analysis": skewed})  # ~10% bad
    assert failures(run, "validate_split") == {(f"{RATE} of analysis", "expect_column_mean_to_be_between")}
