"""ingest (formats, PII masking, data version, bad input) and split (stratified, seeded, disjoint)."""

from __future__ import annotations

import pandas as pd
import pytest

from mlpipe import storage
from mlpipe.pii import keyed_hash
from mlpipe.runs import Run
from mlpipe.steps import StepError, run_step
from tests.conftest import DATA_PATH


@pytest.fixture(scope="module")
def loans() -> pd.DataFrame:
    return pd.read_csv(DATA_PATH)


def test_ingest_masks_pii_and_versions_the_data(start_run, loans):
    run = start_run()
    result = run_step("ingest", run)
    snapshot = storage.read_parquet(result["snapshot"])
    assert (result["rows"], result["columns"]) == loans.shape == snapshot.shape
    assert result["pii"] == {"addr_state": "hash"}
    assert not set(loans["addr_state"]) & set(snapshot["addr_state"])
    assert snapshot["addr_state"].nunique() == loans["addr_state"].nunique()
    assert snapshot["addr_state"].tolist() == keyed_hash(loans["addr_state"], b"test-key-not-a-secret").tolist()
    assert storage.read_json(Run(run).path("ingest", "result.json")) == result
    again = run_step("ingest", start_run("second_run"))
    assert again["data_version"] == result["data_version"]


def test_data_version_changes_with_one_value(start_run, loans, tmp_path):
    changed = loans.copy()
    changed.loc[17, "int_rate"] += 0.01
    path = tmp_path / "changed.parquet"
    changed.to_parquet(path)
    first = run_step("ingest", start_run("a"))
    second = run_step("ingest", start_run("b", **{"data.source": path.as_uri()}))
    assert first["data_version"] != second["data_version"]


def test_hash_key_changes_the_tokens(start_run, monkeypatch):
    first = storage.read_parquet(run_step("ingest", start_run("a"))["snapshot"])
    monkeypatch.setenv("MLPIPE_PII_KEY", "another-key")
    second = storage.read_parquet(run_step("ingest", start_run("b"))["snapshot"])
    assert not set(first["addr_state"]) & set(second["addr_state"])


def test_drop_rule_removes_the_column(start_run):
    run = start_run(pii=[{"column": "addr_state", "action": "drop"}],
                    features={"categorical": ["term", "sub_grade"]})
    snapshot = storage.read_parquet(run_step("ingest", run)["snapshot"])
    assert "addr_state" not in snapshot.columns


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("", "the file is empty"),
        ("a,b,Class\n", "has a header but no rows"),
        ("a,b\n1,2\n", "target column 'Class' (target.column) is not in the data; columns are: a, b"),
    ],
)
def test_bad_source_is_refused_and_nothing_is_written(start_run, tmp_path, content, message):
    source = tmp_path / "input.csv"
    if content is not None:
        source.write_text(content)
    run = start_run(**{"data.source": source.as_uri()})
    with pytest.raises((StepError, storage.StorageError), match=message.replace("(", r"\(").replace(")", r"\)")):
        run_step("ingest", run)
    assert storage.children(Run(run).path("ingest")) == []


def test_hash_rule_without_key_is_refused(start_run, monkeypatch):
    run = start_run()
    monkeypatch.delenv("MLPIPE_PII_KEY")
    with pytest.raises(StepError, match=r"needs the secret \$MLPIPE_PII_KEY"):
        run_step("ingest", run)


def test_ingest_reads_parquet_from_s3(start_run, s3_bucket, loans):
    uri = storage.write_parquet(loans.head(500), f"s3://{s3_bucket}/raw/loans.parquet")
    result = run_step("ingest", start_run(**{"data.source": uri}))
    assert result["rows"] == 500 and result["source"] == uri


def test_split_is_stratified_seeded_and_disjoint(start_run):
    run = start_run()
    run_step("ingest", run)
    result = run_step("split", run)
    parts = {name: storage.read_parquet(result[name]) for name in ("train", "validation", "analysis")}
    assert result["rows"] == {"train": 5913, "validation": 1972, "analysis": 1972}
    rates = result["positive_rate"]
    assert max(rates.values()) - min(rates.values()) < 0.002
    rows = [tuple(r) for part in parts.values() for r in part.astype(str).itertuples(index=False)]
    assert len(rows) == 9857
    again = run_step("split", run)
    pd.testing.assert_frame_equal(storage.read_parquet(again["analysis"]), parts["analysis"])


def test_split_before_ingest_is_a_clear_error(start_run):
    from mlpipe.runs import StepNotFinished

    with pytest.raises(StepNotFinished, match="step 'ingest' has not finished"):
        run_step("split", start_run())
