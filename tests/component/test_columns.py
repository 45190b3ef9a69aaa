"""Columns decided before training: named columns checked, feature kinds inferred, unusable features refused.

Real data through the real steps (ingest, validate, split, train on a small set) and the real
``mlpipe profile``; each spec key that names a column is tried with a column the data lacks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpipe.core import spec, uris
from mlpipe.core.results import Train
from mlpipe.core.tasks import Task
from mlpipe.data import columns
from mlpipe.data.features import labels
from mlpipe.data.profile import write_profile
from mlpipe.model.booster import booster_params
from mlpipe.model.tabular import TabularModel
from mlpipe.steps import run_step
from mlpipe.store import storage
from mlpipe.store.runs import ERROR, Run

FAST = {"training.num_boost_round": 40, "training.early_stopping_rounds": 10, "tuning.enabled": False}


def applicants(rows: int = 1200, seed: int = 3) -> pd.DataFrame:
    """A small credit set of the kind a newcomer brings: text columns, a bool, its own target name."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.8, 0.5, rows).round(0)
    purpose = rng.choice(["car", "house", "debt", "holiday", "freelance"], rows)
    risk = -2.2 + 0.9 * (purpose == "holiday") - 0.00002 * (income - 50_000) + rng.normal(0, 1, rows)
    return pd.DataFrame({
        "applicant_id": [f"A{i:05d}" for i in range(rows)],
        "income": income,
        "purpose": purpose,
        "housing": rng.choice(["own", "rent", "free"], rows),
        "has_phone": rng.random(rows) < 0.6,
        "grade": rng.integers(1, 6, rows),
        "status": np.where(risk > 0, "defaulted", "repaid"),
    })


def minimal(source: str, **overrides) -> spec.Spec:
    """The first spec a newcomer writes: a name, a data source, a target."""
    document = {"name": "newcomer", "data": {"source": source},
                "target": {"column": "status", "positive_class": "defaulted"}, "id_columns": ["applicant_id"]}
    return spec.with_overrides(spec.parse(document), {**FAST, **overrides})


@pytest.fixture
def newcomer_csv(tmp_path) -> str:
    path = tmp_path / "applicants.csv"
    applicants().to_csv(path, index=False)
    return uris.normalize(path)


def kinds_of(frame: pd.DataFrame, **overrides) -> dict[str, str]:
    return columns.feature_kinds(frame, minimal("file:///x.csv", **overrides))


def test_text_and_bool_columns_are_categorical_numbers_numeric():
    assert kinds_of(applicants()) == {"income": "numeric", "purpose": "categorical", "housing": "categorical",
                                      "has_phone": "categorical", "grade": "numeric"}


def test_integer_codes_are_categorical_as_the_spec_allows_and_the_spec_overrides():
    frame = applicants()
    assert kinds_of(frame, **{"features.max_code_levels": 5})["grade"] == "categorical"
    assert kinds_of(frame, **{"features.max_code_levels": 4})["grade"] == "numeric"  # 5 distinct values
    forced = kinds_of(frame, **{"features.categorical": ["income"], "features.numeric": ["has_phone"]})
    assert (forced["income"], forced["has_phone"]) == ("categorical", "numeric")


def test_the_reviewed_profile_keeps_a_column_kind_the_data_alone_would_change():
    frame = applicants()
    reviewed = {"grade": {"kind": "categorical"}, "purpose": {"kind": "categorical"}}
    assert columns.feature_kinds(frame, minimal("file:///x.csv"), reviewed)["grade"] == "categorical"


def test_a_column_listed_both_ways_is_a_spec_error():
    with pytest.raises(spec.SpecError, match=r"features: \['grade'\] are listed both in categorical "
                                             r"and in numeric"):
        minimal("file:///x.csv", **{"features.categorical": ["grade"], "features.numeric": ["grade"]})


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("signed", pd.to_datetime(["2024-01-01"] * 1200), r"feature 'signed' holds dates or durations"),
        ("notes", [None] * 1200, r"feature 'notes' has no values in 1200 rows: exclude it \(features\.exclude\)"),
        ("salary", ["unknown" if i % 97 == 0 else str(1000 + i) for i in range(1200)],
         r"feature 'salary' is text, but 99% of its values are numbers; the others are not, such as 'unknown'"),
        ("name", [f"person {i}" for i in range(1200)],
         r"feature 'name' is text with 1200 distinct values in 1200 rows, like an id or free text"),
    ],
)
def test_a_feature_the_model_cannot_use_is_refused_by_name(column, values, message):
    frame = applicants().assign(**{column: values})
    with pytest.raises(spec.SpecError, match=message):
        kinds_of(frame)
    forced = {"features.categorical": [column]} if column in ("salary", "name") else {"features.exclude": [column]}
    assert column not in kinds_of(frame, **forced) or kinds_of(frame, **forced)[column] == "categorical"


def test_text_in_a_column_forced_numeric_is_refused_naming_the_values():
    frame = applicants().assign(grade=["n/a" if i % 50 == 0 else str(i % 5) for i in range(1200)])
    with pytest.raises(spec.SpecError, match=r"feature 'grade' is numeric \(features\.numeric\) but holds text "
                                             r"such as 'n/a'"):
        kinds_of(frame, **{"features.numeric": ["grade"]})


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("thresholds.fairness", {"column": "emp_length"}, "thresholds.fairness.column: 'emp_length'"),
        ("slices", ["purpose", "region"], "slices: 'region'"),
        ("pii", [{"column": "email", "action": "drop"}], r"pii\[0\]\.column: 'email'"),
        ("id_columns", ["loan_id"], "id_columns: 'loan_id'"),
        ("features.include", ["income", "term"], "features.include: 'term'"),
        ("features.exclude", ["zip"], "features.exclude: 'zip'"),
        ("features.categorical", ["region"], "features.categorical: 'region'"),
        ("features.numeric", ["age"], "features.numeric: 'age'"),
        ("target.column", "Class", "target.column: 'Class'"),
    ],
)
def test_every_column_a_spec_names_is_checked_by_profile_and_ingest_before_anything_is_trained(
        pipeline_env, newcomer_csv, tmp_path, key, value, named):
    broken = minimal(newcomer_csv, **{key: value})
    output = tmp_path / "profile.json"
    pattern = rf"{named} is not a column of {newcomer_csv}(.|\n)*\(the columns of .*: applicant_id, income"
    with pytest.raises(spec.SpecError, match=pattern):
        write_profile(broken, uris.normalize(output))
    assert not output.exists()
    from mlpipe.store import runs

    run = runs.start(broken, "broken")
    with pytest.raises(spec.SpecError, match=pattern):
        run_step("ingest", run)
    assert storage.children(Run(run).path("ingest")) == [ERROR]  # how it failed, nothing else


def test_a_missing_reference_profile_fails_ingest_with_the_command_that_makes_it(pipeline_env, newcomer_csv,
                                                                                  tmp_path):
    from mlpipe.store import runs

    absent = uris.normalize(tmp_path / "newcomer.profile.json")
    run = runs.start(minimal(newcomer_csv, **{"validation.profile": absent}), "no_profile")
    with pytest.raises(Exception, match=rf"validation\.profile: there is no reference profile at {absent}; make "
                                        r"it with `mlpipe profile dags/pipelines/newcomer\.yaml`"):
        run_step("ingest", run)


def test_text_columns_nobody_listed_train_through_the_real_steps(pipeline_env, newcomer_csv, tmp_path):
    """Before: train crashed with "Unable to parse string 'freelance'" after validation had passed."""
    from mlpipe.store import runs

    profile = uris.normalize(tmp_path / "newcomer.profile.json")
    newcomer = minimal(newcomer_csv, **{"validation.profile": profile})
    written = storage.read_json(write_profile(newcomer))
    assert {name: entry["kind"] for name, entry in written["columns"].items()} == {
        "applicant_id": "other", "income": "numeric", "purpose": "categorical", "housing": "categorical",
        "has_phone": "categorical", "grade": "numeric", "status": "categorical"}
    run = runs.start(newcomer, "newcomer")
    ingested = run_step("ingest", run)
    assert ingested["categorical"] == ["purpose", "housing", "has_phone"]
    assert Run(run).spec.features.categorical == ["purpose", "housing", "has_phone"]
    for step in ("validate", "split", "validate_split", "train"):
        run_step(step, run)
    trained = Run(run).result(Train)
    schema = TabularModel.load(trained.model_folder).schema
    assert sorted(schema["categorical"]) == ["has_phone", "housing", "purpose"]
    assert set(schema["categorical"]["purpose"]) == {"car", "house", "debt", "holiday", "freelance"}
    assert trained.validation["roc_auc"] > 0.6  # the planted signal was learnt, text columns included


def test_several_target_values_can_be_the_positive_class():
    frame = pd.DataFrame({"loan_status": ["current", "charged_off", "late", "current", "in_grace_period", "paid"]})
    several = spec.parse({"name": "status", "data": {"source": "file:///x.csv"},
                          "target": {"column": "loan_status",
                                     "positive_class": ["charged_off", "late", "in_grace_period"]}})
    assert labels(frame, several).tolist() == [0, 1, 1, 0, 1, 0]
    assert several.target.positive_text == "['charged_off', 'late', 'in_grace_period']"
    with pytest.raises(spec.SpecError, match=r"target\.positive_class"):
        spec.parse({"name": "status", "data": {"source": "x.csv"},
                    "target": {"column": "loan_status", "positive_class": []}})


def test_a_minimal_spec_gets_defaults_that_suit_the_data(tmp_path):
    path = tmp_path / "first.yaml"
    path.write_text("name: first\ndata:\n  source: data/mine.csv\ntarget:\n  column: churned\n"
                    "  positive_class: 'yes'\n")
    first = spec.load(path)
    assert first.validation.profile == uris.normalize(tmp_path / "first.profile.json")
    assert first.data.source == uris.normalize(tmp_path / "data" / "mine.csv")
    assert first.target.task == Task.BINARY and "eta" in first.tuning.search_space
    assert booster_params(first.training, 1.0, "cpu")["objective"] == "binary:logistic"  # the task's
    assert first.thresholds.fairness is None and first.slices == []
    assert first.validation.positive_rate_band(0.2) == (0.1, 0.3)
    assert first.validation.positive_rate_band(None) == (0.0, 1.0)
    own = spec.with_overrides(first, {"training.params": {"max_depth": 3}})
    assert own.training.params["max_depth"] == 3 and own.training.params["eta"] == first.training.params["eta"]


@pytest.mark.parametrize(
    ("enabled", "rows", "minority", "skipped"),
    [("auto", 6000, 300, None), ("auto", 400, 40, "too few to rank params"), ("auto", 5000, 20, "too few"),
     ("auto", 3_000_000, 90_000, "more than 2,000,000"), (True, 400, 10, None), (False, 6000, 300, "false")],
)
def test_tuning_auto_tunes_by_data_size(enabled, rows, minority, skipped):
    tuning = spec.Tuning(enabled=enabled)
    reason = tuning.skip_reason(rows, minority)
    assert reason is None if skipped is None else skipped in reason


def test_make_runs_profile_writes_a_missing_profile_once_and_lists_the_feature_kinds(pipeline_env, newcomer_csv,
                                                                                      tmp_path, capsys):
    from mlpipe import cli

    path = tmp_path / "newcomer.yaml"
    path.write_text(f"name: newcomer\ndata:\n  source: {newcomer_csv}\ntarget:\n  column: status\n"
                    "  positive_class: defaulted\nid_columns: [applicant_id]\n")
    assert cli.main(["profile", "--keep", str(path)]) == 0
    wrote = capsys.readouterr().out
    assert f"reference profile: wrote {uris.normalize(tmp_path / 'newcomer.profile.json')}" in wrote
    assert "features: categorical has_phone, housing, purpose; numeric grade, income" in wrote
    before = (tmp_path / "newcomer.profile.json").read_bytes()
    assert cli.main(["profile", "--keep", str(path)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"reference profile: {uris.normalize(tmp_path / 'newcomer.profile.json')}")  # kept, not rewritten
    assert (tmp_path / "newcomer.profile.json").read_bytes() == before


def test_small_data_is_tuned_by_cross_validation_by_default():
    """A ~100-positive validation split ranks params by noise: auto cross-validates up to 100,000 rows."""
    assert (spec.Tuning().folds(9_000), spec.Tuning().folds(100_000), spec.Tuning().folds(100_001)) == (4, 4, None)
    assert spec.Tuning(cv_folds=None).folds(500) is None and spec.Tuning(cv_folds=5).folds(10**7) == 5
