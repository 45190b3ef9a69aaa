"""The spec loader: the shipped spec is valid, and every kind of mistake names its field."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from mlpipe.core import spec
from tests.conftest import DATA_PATH, SPEC_PATH


@pytest.fixture
def document() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def test_shipped_spec_resolves_relative_paths(loan_spec):
    assert loan_spec.name == "loan_default"
    assert loan_spec.data.source == DATA_PATH.as_uri()
    assert loan_spec.validation.profile.endswith("/dags/pipelines/loan_default.profile.json")
    assert loan_spec.registered_model == "loan_default"


def test_feature_columns_leave_out_target_ids_and_dropped_pii(document):
    document["pii"] = [{"column": "addr_state", "action": "drop"}]
    document["id_columns"] = ["funded_amnt"]
    document["features"]["categorical"] = ["term"]
    pipeline = spec.parse(document)
    assert pipeline.feature_columns(["funded_amnt", "term", "addr_state", "int_rate", "Class"]) == [
        "term", "int_rate"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(colour="red"), "spec: colour: unknown key"),
        (lambda d: d["training"].update(num_boost_rounds=10), "training.num_boost_rounds: unknown key"),
        (lambda d: d.pop("target"), "spec: target: Field required"),
        (lambda d: d["target"].pop("column"), "target.column: Field required"),
        (lambda d: d["split"].update(analysis="a lot"), "split.analysis: Input should be a valid number"),
        (lambda d: d["split"].update(validation=0.5, analysis=0.45), "split: Value error"),
        (lambda d: d.update(name="Loan Default"), "name: String should match pattern"),
        (lambda d: d["pii"][0].update(action="encrypt"), "pii.0.action: Input should be 'hash' or 'drop'"),
        (lambda d: d["validation"].update(positive_rate=[0.2, 0.1]), "low <= high"),
        (lambda d: d["features"]["categorical"].append("Class"), "features.categorical: the target column"),
        (lambda d: d["tuning"].update(cv_folds=1), "tuning.cv_folds: Input should be greater than or equal to 2"),
        (lambda d: d["tuning"].update(cv_folds="four"), "tuning.cv_folds: Input should be a valid integer"),
    ],
)
def test_bad_spec_names_the_field(document, change, message):
    bad = copy.deepcopy(document)
    change(bad)
    with pytest.raises(spec.SpecError) as error:
        spec.parse(bad)
    assert message.replace("Value error", "") in str(error.value)


def test_every_bad_field_is_reported_at_once(document):
    document.update(colour="red")
    document["split"]["seed"] = "x"
    with pytest.raises(spec.SpecError) as error:
        spec.parse(document)
    assert str(error.value).splitlines() == [
        "spec: split.seed: Input should be a valid integer, unable to parse string as an integer",
        "spec: colour: unknown key",
    ]


def test_load_reports_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(spec.SpecError, match="no such spec file"):
        spec.load(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(spec.SpecError, match=r"broken\.yaml: not valid YAML"):
        spec.load(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(spec.SpecError, match="a spec must be a mapping"):
        spec.load(listed)


def test_overrides_are_revalidated(loan_spec):
    changed = spec.with_overrides(loan_spec, {"data.source": "s3://bucket/loans.parquet"})
    assert changed.data.source == "s3://bucket/loans.parquet"
    assert loan_spec.data.source != changed.data.source
    with pytest.raises(spec.SpecError, match=r"split\.seed"):
        spec.with_overrides(loan_spec, {"split.seed": "abc"})


@pytest.mark.parametrize(("key", "field"), [("col\nour", "'col\\nour'"), ("", "''"), ("a\u2028b", "'a\\u2028b'")])
def test_an_unknown_key_with_a_line_break_or_empty_stays_on_its_line(document, key, field):
    document[key] = 1  # found by test_spec_properties.py: the key split the message / read "(top level)"
    with pytest.raises(spec.SpecError) as error:
        spec.parse(document, source="fuzz.yaml")
    assert str(error.value).splitlines() == [f"fuzz.yaml: {field}: unknown key"]


def test_load_reports_unreadable_files_as_spec_errors(tmp_path):
    with pytest.raises(spec.SpecError, match="cannot read the spec file"):  # was IsADirectoryError
        spec.load(tmp_path)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(spec.SpecError, match="not UTF-8 text"):  # was UnicodeDecodeError
        spec.load(latin1)
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 2000 + "]" * 2000)
    with pytest.raises(spec.SpecError, match="nested too deeply"):  # was RecursionError
        spec.load(deep)


@pytest.mark.parametrize("dotted", ["data.source.x", "tags.0", "split.seed.deeper.still"])
def test_an_override_below_a_value_is_a_spec_error(loan_spec, dotted):
    with pytest.raises(spec.SpecError, match=rf"trigger options: {re.escape(dotted)}: .* is not a section"):
        spec.with_overrides(loan_spec, {dotted: 1})  # was TypeError / AttributeError


@pytest.mark.parametrize(("field", "value"), [("thresholds.min_lift_over_baseline", ".nan"),
                                              ("thresholds.min_improvement_over_champion", "-.inf"),
                                              ("training.scale_pos_weight", ".inf")])
def test_nan_and_infinity_are_refused_naming_the_field(tmp_path, field, value):
    section, key = field.split(".")
    document = yaml.safe_load(SPEC_PATH.read_text())
    document[section].pop(key, None)
    path = tmp_path / "loan_default.yaml"
    path.write_text(yaml.safe_dump(document).replace(f"{section}:\n", f"{section}:\n  {key}: {value}\n", 1))
    with pytest.raises(spec.SpecError, match=rf"{re.escape(field)}: Input should (be .* or )?be a finite number"):
        spec.load(path)


def test_a_self_referencing_alias_is_refused(tmp_path):
    path = tmp_path / "loan_default.yaml"
    path.write_text(SPEC_PATH.read_text().replace("training:\n", "training:\n  params: &loop {self: *loop}\n", 1)
                    .replace("  params:                              #", "  old_params:   #", 1))
    with pytest.raises(spec.SpecError, match=r"loan_default.yaml: a YAML alias \(\*name\) refers to a collection "
                                             r"that contains it"):
        spec.load(path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"schedule": "every day"}, "spec: schedule: 'every day' is neither a cron expression"),
        ({"scoring": {"schedule": "@dialy"}}, "spec: scoring.schedule: '@dialy' is neither a cron expression"),
        ({"monitoring": {"schedule": "61 * * * *"}}, "spec: monitoring.schedule: '61 * * * *' is neither"),
        ({"start_date": "yesterday"}, "spec: start_date: 'yesterday' is not an ISO date such as 2026-01-01"),
    ],
)
def test_schedules_and_the_start_date_are_checked_naming_the_field(extra, message):
    document = {"name": "x", "data": {"source": "a.csv"}, "target": {"column": "y", "positive_class": 1}}
    with pytest.raises(spec.SpecError) as caught:
        spec.parse({**document, **extra})
    assert str(caught.value).startswith(message)
    fine = spec.parse({**document, "schedule": "0 3 * * 1", "start_date": "2026-01-01T00:00:00+00:00"})
    assert (fine.schedule, fine.scoring.schedule) == ("0 3 * * 1", None)
