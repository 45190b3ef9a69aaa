"""Bad training data: refused with the file, line or column named, and nothing downstream runs on it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mlpipe.core import uris
from mlpipe.core.errors import Refused
from mlpipe.steps import run_step
from mlpipe.store import storage
from mlpipe.store.runs import ERROR, Run, StepNotFinished
from tests.conftest import DATA_PATH

BAD_LINE = 11  # the header is line 1


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return DATA_PATH.read_text().splitlines()


def with_line(lines: list[str], text: str) -> str:
    return "\n".join([*lines[:BAD_LINE - 1], text, *lines[BAD_LINE:]]) + "\n"


@pytest.mark.parametrize(("change", "message"), [
    (lambda line: '"' + line, rf"loans.csv: cannot be read as csv: line {BAD_LINE} has 1 fields, the header 23"),
    (lambda line: "1,2,3", rf"loans.csv: cannot be read as csv: line {BAD_LINE} has 3 fields, the header 23: '1,2,3'"),
])
def test_a_malformed_csv_line_is_refused_by_ingest_naming_the_line(start_run, tmp_path, lines, change, message):
    source = tmp_path / "loans.csv"
    source.write_text(with_line(lines, change(lines[BAD_LINE - 1])))
    run = start_run(**{"data.source": source.as_uri()})
    with pytest.raises(Refused, match=message):
        run_step("ingest", run)
    assert storage.children(Run(run).path("ingest")) == [ERROR]  # how it failed, nothing else
    with pytest.raises(StepNotFinished):
        run_step("validate", run)


@pytest.mark.parametrize(("column", "value", "expectation"), [
    ("int_rate", "high", "int_rate: expect_column_values_to_be_in_type_list"),
    ("annual_inc", "inf", "annual_inc: expect_column_values_to_be_between"),
    ("annual_inc", "-inf", "annual_inc: expect_column_values_to_be_between"),
])
def test_a_bad_value_is_refused_by_validate_naming_the_column(start_run, tmp_path, column, value, expectation):
    loans = pd.read_csv(DATA_PATH).astype({column: object})
    loans.loc[BAD_LINE - 2, column] = value
    source = tmp_path / "loans.csv"
    loans.to_csv(source, index=False)
    run = start_run(**{"data.source": source.as_uri()})
    run_step("ingest", run)
    with pytest.raises(Refused, match=expectation):
        run_step("validate", run)
    assert not storage.exists(Run(run).path("validate", "result.json"))  # the DAG's later tasks never start


def text_in_annual_inc(tmp_path, values: dict[int, str]):
    """The bundled loans with ``values`` (row -> text) in the numeric column annual_inc, as a CSV file URI."""
    loans = pd.read_csv(DATA_PATH).astype({"annual_inc": object})
    for row, value in values.items():
        loans.loc[row, "annual_inc"] = value
    source = tmp_path / "loans.csv"
    loans.to_csv(source, index=False)
    return source.as_uri()


GX_INTERNALS = ("Column values, min_value, and max_value", "Traceback", "Exception", "Error", "great_expectations",
                "Dtype", "exception")


def test_text_in_a_numeric_column_lists_the_text_not_the_numbers(start_run, tmp_path):
    run = start_run(**{"data.source": text_in_annual_inc(tmp_path, {2: "unknown", 5: "?", 9: "unknown",
                                                                    40: "unknown"}),
                       "data.batch_rows": 1000})
    run_step("ingest", run)
    with pytest.raises(Refused) as refused:
        run_step("validate", run)
    lines = str(refused.value).splitlines()[1:]
    assert lines == [
        "annual_inc: expect_column_values_to_be_between (observed: not evaluated, the check could not run on these "
        "values (its error is in validation.json) / expected: max_value=1.056e+06, min_value=-96000)",
        "annual_inc: expect_column_values_to_be_in_type_list (observed: 0.04% of rows unexpected, "
        "e.g. ['unknown' (3 rows), '?' (1 row)] / expected: type_list=numeric)"]
    assert not any(internal in str(refused.value) for internal in GX_INTERNALS)
    folder = Run(run).path("validate")
    assert not storage.exists(uris.join(folder, "result.json"))
    saved = storage.read_json(uris.join(folder, "validation.json"))  # the full GX result, its error included
    errors = [item["exception_info"] for item in saved["results"]
              if item["expectation_config"]["type"] == "expect_column_values_to_be_between"
              and item["expectation_config"]["kwargs"]["column"] == "annual_inc"]
    assert "Column values, min_value, and max_value" in json.dumps(errors)


def test_many_texts_in_a_numeric_column_are_listed_within_bounds(start_run, tmp_path):
    values = {row: f"text {row} " + "x" * (row * 100) for row in range(1, 31)}  # 30 values, up to 3,000 characters
    run = start_run(**{"data.source": text_in_annual_inc(tmp_path, values)})
    run_step("ingest", run)
    with pytest.raises(Refused) as refused:
        run_step("validate", run)
    [line] = [line for line in str(refused.value).splitlines() if "in_type_list" in line]
    assert line.startswith("annual_inc: expect_column_values_to_be_in_type_list (observed: 0.30% of rows "
                           "unexpected, e.g. ['text 1 xxx")
    assert ", ... 24 more rows] / expected: type_list=numeric)" in line
    assert line.count("(1 row)") == 6 and len(line) < 500


def test_nan_counts_as_missing_and_a_huge_field_as_one_unseen_category(start_run, tmp_path):
    loans = pd.read_csv(DATA_PATH)
    loans.loc[3, "annual_inc"] = float("nan")
    loans.loc[5, "sub_grade"] = "x" * (5 << 20)  # a 5 MiB value
    source = tmp_path / "loans.csv"
    loans.to_csv(source, index=False)
    run = start_run(**{"data.source": source.as_uri()})
    assert run_step("ingest", run)["rows"] == len(loans)
    result = storage.read_json(run_step("validate", run)["result"])  # within the documented tolerances
    unexpected = {item["expectation_config"]["kwargs"]["column"]: item["result"].get("unexpected_count")
                  for item in result["results"] if item["expectation_config"]["type"] in (
                      "expect_column_values_to_not_be_null", "expect_column_values_to_be_in_set")
                  and item["result"].get("unexpected_count")}
    assert unexpected == {"annual_inc": 1, "sub_grade": 1}


@pytest.mark.parametrize(("change", "message"), [
    (lambda ids: ids.__setitem__(7000, ids[12]), r"rows 13 and 7001 of .*loans.csv have the same id "
                                                 r"\(1 rows repeat an earlier id\); ids must be unique"),
    (lambda ids: ids.__setitem__(4321, None), r"row 4322 of .*loans.csv has no id \(1 rows in its batch\)"),
])
def test_repeated_or_missing_ids_are_refused_by_ingest_naming_the_rows(start_run, tmp_path, change, message):
    loans = pd.read_csv(DATA_PATH)
    ids = [f"L{n:06d}" for n in range(len(loans))]
    change(ids)  # row 7001 repeats row 13's id across batches of 1,000 / row 4322 has none
    loans.insert(0, "loan_id", ids)
    source = tmp_path / "loans.csv"
    loans.to_csv(source, index=False)
    run = start_run(**{"data.source": source.as_uri(), "data.batch_rows": 1000, "id_columns": ["loan_id"]})
    with pytest.raises(Refused, match=rf"id_columns \['loan_id'\]: {message}") as refused:
        run_step("ingest", run)
    assert "L0" not in str(refused.value)  # rows are named by position, never by id
    assert storage.children(Run(run).path("ingest")) == [ERROR]  # how it failed, nothing else
