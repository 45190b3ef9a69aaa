"""ingest (formats, PII masking, data version, bad input) and split (stratified, seeded, disjoint)."""

from __future__ import annotations

import pandas as pd
import pytest

from mlpipe.core.errors import Refused, StorageError
from mlpipe.core.results import Ingest
from mlpipe.core.spec import SpecError
from mlpipe.data import datasets
from mlpipe.data.pii import keyed_hash
from mlpipe.steps import run_step
from mlpipe.store import storage
from mlpipe.store.runs import ERROR, Run


def test_ingest_masks_pii_and_versions_the_data(start_run, loans):
    run = start_run()
    result = run_step("ingest", run)
    snapshot = datasets.read(result["snapshot"])
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
    first = datasets.read(run_step("ingest", start_run("a"))["snapshot"])
    monkeypatch.setenv("MLPIPE_PII_KEY", "another-key")
    second = datasets.read(run_step("ingest", start_run("b"))["snapshot"])
    assert not set(first["addr_state"]) & set(second["addr_state"])


def test_drop_rule_removes_the_column(start_run):
    run = start_run(pii=[{"column": "addr_state", "action": "drop"}],
                    features={"categorical": ["term", "sub_grade"]})
    snapshot = datasets.read(run_step("ingest", run)["snapshot"])
    assert "addr_state" not in snapshot.columns


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (None, "no such file"),
        ("", "the file is empty"),
        ("a,b,Class\n", "has a header but no rows"),
        ("a,b\n1,2\n", r"target\.column: 'Class' is not a column of file://.*input\.csv\n(.*\n)*"
                        r"thresholds\.fairness\.column: 'emp_length' is not a column of .*\n"
                        r"\(the columns of file://.*input\.csv: a, b\)"),
    ],
)
def test_bad_source_is_refused_and_nothing_is_written(start_run, tmp_path, content, pattern):
    source = tmp_path / "input.csv"
    if content is not None:
        source.write_text(content)
    run = start_run(**{"data.source": source.as_uri()})
    with pytest.raises((Refused, SpecError, StorageError), match=pattern):
        run_step("ingest", run)
    assert storage.children(Run(run).path("ingest")) == [ERROR]  # how it failed, nothing else


def test_hash_rule_without_key_is_refused(start_run, monkeypatch):
    run = start_run()
    monkeypatch.delenv("MLPIPE_PII_KEY")
    with pytest.raises(Refused, match=r"needs the secret \$MLPIPE_PII_KEY"):
        run_step("ingest", run)


def test_ingest_reads_parquet_from_s3(start_run, s3_bucket, loans):
    uri = storage.write_parquet(loans.head(500), f"s3://{s3_bucket}/raw/loans.parquet")
    result = run_step("ingest", start_run(**{"data.source": uri}))
    assert result["rows"] == 500 and result["source"] == uri


def split_parts(run: str) -> tuple[dict, dict[str, pd.DataFrame]]:
    run_step("ingest", run)
    result = run_step("split", run)
    return result, {name: datasets.read(result[name]) for name in ("train", "validation", "analysis")}


@pytest.mark.parametrize("batch_rows", [250_000, 1_000])
def test_split_is_stratified_seeded_and_disjoint(start_run, loans, batch_rows):
    run = start_run(**{"data.batch_rows": batch_rows})
    result, parts = split_parts(run)
    assert result["parts"] == dict.fromkeys(parts, -(-len(loans) // batch_rows))
    for name, share in (("validation", 0.2), ("analysis", 0.2)):  # each class's share, rounded to a row
        counts = parts[name]["Class"].value_counts()
        for label, total in loans["Class"].value_counts().items():
            assert abs(counts[label] - total * share) <= 0.5, (name, label)
    assert result["rows"] == {name: len(part) for name, part in parts.items()}
    rates = result["positive_rate"]
    assert max(rates.values()) - min(rates.values()) < 0.002
    rows = sorted(tuple(r) for part in parts.values() for r in part.astype(str).itertuples(index=False))
    snapshot = datasets.read(Run(run).result(Ingest).snapshot)
    assert rows == sorted(tuple(r) for r in snapshot.astype(str).itertuples(index=False))  # every row once
    again = run_step("split", run)
    pd.testing.assert_frame_equal(datasets.read(again["analysis"]), parts["analysis"])


def test_batches_change_neither_the_snapshot_nor_its_version(start_run):
    whole = run_step("ingest", start_run("whole"))
    batched = run_step("ingest", start_run("batched", **{"data.batch_rows": 1_000}))
    assert (whole["parts"], batched["parts"]) == (1, 10)
    assert batched["data_version"] == whole["data_version"]
    pd.testing.assert_frame_equal(datasets.read(batched["snapshot"]), datasets.read(whole["snapshot"]))


def test_a_folder_of_parts_is_one_source(start_run, loans, tmp_path):
    for number, start in enumerate(range(0, len(loans), 4_000)):
        loans.iloc[start:start + 4_000].to_parquet(tmp_path / f"part-{number:05d}.parquet")
    from_parts = run_step("ingest", start_run("parts", **{"data.source": tmp_path.as_uri()}))
    from_csv = run_step("ingest", start_run("csv"))
    assert from_parts["rows"] == len(loans) and from_parts["data_version"] == from_csv["data_version"]


def test_a_bad_part_after_good_ones_leaves_no_snapshot(start_run, loans, tmp_path):
    loans.iloc[:5_000].to_parquet(tmp_path / "part-00000.parquet")
    loans.iloc[5_000:].astype({"int_rate": str}).assign(int_rate="high").to_parquet(tmp_path / "part-00001.parquet")
    run = start_run(**{"data.source": tmp_path.as_uri(), "data.batch_rows": 1_000})
    with pytest.raises(Refused, match=r"part-00001.parquet: column 'int_rate' is (string|large_string) here "
                                        r"but double in the first part"):
        run_step("ingest", run)
    assert storage.children(Run(run).path("ingest")) == [ERROR]  # the 5 parts written before are gone


def test_a_short_csv_row_names_the_file_and_the_problem(start_run, loans, tmp_path):
    source = tmp_path / "loans.csv"
    source.write_text(loans.to_csv(index=False) + "1,2,3\n")
    with pytest.raises(Refused, match=r"loans.csv: cannot be read as csv: line 9859 has 3 fields, "
                                        r"the header 23: '1,2,3'$"):  # 9,857 rows after the header
        run_step("ingest", start_run(**{"data.source": source.as_uri()}))


def test_split_before_ingest_is_a_clear_error(start_run):
    from mlpipe.store.runs import StepNotFinished

    with pytest.raises(StepNotFinished, match="step 'ingest' has not finished"):
        run_step("split", start_run())
