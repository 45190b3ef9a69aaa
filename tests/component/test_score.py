"""score: the champion scores a batch in chunks, checked against the training schema, PII masked."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlpipe.core import uris
from mlpipe.core.assets import INPUT_URIS
from mlpipe.core.errors import Refused
from mlpipe.core.results import Train
from mlpipe.data import datasets
from mlpipe.data.pii import keyed_hash
from mlpipe.model.tabular import TabularModel
from mlpipe.steps import run_step
from mlpipe.store import runs, storage
from mlpipe.store.runs import Run
from tests.conftest import DATA_PATH


@pytest.fixture(scope="module")
def champion_run(analyzed_run) -> str:
    """The analyzed run, registered and made champion (forced: the fast test model may miss the thresholds)."""
    storage.write_json(uris.join(analyzed_run, runs.OPTIONS), {"force_promote": True})
    assert run_step("register", analyzed_run)["promoted"]
    return analyzed_run


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    return pd.read_csv(DATA_PATH).drop(columns=["Class"]).head(2500)


def scoring_run(champion_run: str, run_id: str, source: str, **spec_changes) -> str:
    from mlpipe.core import spec

    resolved = spec.with_overrides(Run(champion_run).spec, spec_changes) if spec_changes else Run(champion_run).spec
    return runs.start(resolved, run_id, options={"input_uri": source}, kind=runs.SCORING)


def write(tmp_path, frame: pd.DataFrame, name: str) -> str:
    path = tmp_path / name
    frame.to_parquet(path) if name.endswith(".parquet") else frame.to_csv(path, index=False)
    return path.as_uri()


def parts(folder: str) -> pd.DataFrame:
    return pd.concat([storage.read_parquet(uris.join(folder, name)) for name in storage.children(folder)],
                     ignore_index=True)


def expected_scores(champion_run: str, batch: pd.DataFrame) -> np.ndarray:
    """The champion's scores of ``batch`` with its PII hashed as the score step hashes it."""
    masked = batch.copy()
    masked["addr_state"] = keyed_hash(batch["addr_state"], b"test-key-not-a-secret")
    return TabularModel.load(Run(champion_run).result(Train).model_folder).scores(masked)


@pytest.mark.parametrize("name", ["batch.csv", "batch.parquet"])
def test_scores_in_chunks_equal_the_models_scores(champion_run, batch, tmp_path, name):
    uri = scoring_run(champion_run, f"chunks_{name}", write(tmp_path, batch, name), **{"scoring.chunk_rows": 1000})
    result = run_step("score", uri)
    assert (result["rows"], result["chunks"], result["model_version"]) == (2500, 3, 1)
    phases = result["seconds_by_phase"]
    assert set(phases) == {"read", "mask_pii", "validate", "score", "write"} and min(phases.values()) >= 0
    assert min(phases[name] for name in ("read", "mask_pii", "validate", "score")) > 0  # the write phase is only the
    # wait for the chunk before's writes (:func:`written_behind`): under a millisecond, it rounds to 0.0
    assert sum(phases.values()) <= result["seconds"]
    predictions, inputs = parts(result["predictions"]), parts(result["inputs"])
    assert len(storage.children(result["predictions"])) == 3
    np.testing.assert_allclose(predictions["score"], expected_scores(champion_run, batch), rtol=0, atol=1e-7)
    assert (predictions["decision"] == (predictions["score"] >= result["threshold"])).all()
    assert result["positive_decisions"] == int(predictions["decision"].sum()) > 0
    assert set(predictions.columns) == {"score", "decision", "reasons", "model_version", "scored_at"}
    declined = predictions["reasons"][predictions["decision"]].map(json.loads)
    assert declined.map(len).between(1, 4).all() and (predictions["reasons"][~predictions["decision"]] == "[]").all()
    assert not set(batch["addr_state"]) & set(inputs["addr_state"]), "raw PII reached the kept inputs"
    np.testing.assert_allclose(inputs["score"], predictions["score"])


def test_a_folder_of_parquet_parts_is_scored_every_row_once(champion_run, batch, tmp_path):
    folder = uris.normalize(tmp_path / "parts")
    with datasets.PartWriter(folder) as writer:
        for start in (0, 1000, 2000):  # parts of 1000, 1000 and 500 rows
            writer.write(batch.iloc[start:start + 1000].reset_index(drop=True))
    uri = scoring_run(champion_run, "parts", folder, **{"scoring.chunk_rows": 700})
    result = run_step("score", uri)
    assert (result["rows"], result["chunks"]) == (2500, 5)  # chunks never span two parts
    predictions = parts(result["predictions"])
    np.testing.assert_allclose(predictions["score"], expected_scores(champion_run, batch), rtol=0, atol=1e-7)


def test_a_run_started_by_several_announced_batches_scores_them_all_in_order(champion_run, batch, tmp_path):
    first, second = write(tmp_path, batch.head(1500), "first.csv"), write(tmp_path, batch.iloc[1500:], "second.parquet")
    uri = runs.start(Run(champion_run).spec, "announced", options={"input_uri": "", INPUT_URIS: [first, second]},
                     kind=runs.SCORING)
    result = run_step("score", uri)
    assert (result["rows"], result["source"]) == (2500, f"{first}, {second}")
    np.testing.assert_allclose(parts(result["predictions"])["score"], expected_scores(champion_run, batch), rtol=0,
                               atol=1e-7)


def test_unexpected_values_are_counted_not_fatal(champion_run, batch, tmp_path):
    odd = batch.head(100).copy()
    odd.loc[:9, "emp_length"] = "emp_unknown"
    odd.loc[:4, "int_rate"] = np.nan
    result = run_step("score", scoring_run(champion_run, "odd", write(tmp_path, odd, "odd.csv")))
    assert result["rows"] == 100
    assert result["value_issues"]["emp_length: expect_column_values_to_be_in_set"] == 10
    assert result["value_issues"]["int_rate: expect_column_values_to_not_be_null"] == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["int_rate"]), "int_rate: expect_column_to_exist"),
        (lambda f: f.assign(annual_inc=f["annual_inc"].astype(str) + " USD"),
         "annual_inc: expect_column_values_to_be_in_type_list"),
    ],
    ids=["missing-column", "wrong-type"],
)
def test_schema_violation_fails_naming_the_column(champion_run, batch, tmp_path, change, message):
    uri = scoring_run(champion_run, f"bad_{message[:8]}", write(tmp_path, change(batch.head(50)), "bad.csv"))
    with pytest.raises(Refused, match=f"does not match the training schema:\n.*{message}"):
        run_step("score", uri)
    assert not storage.exists(Run(uri).path("score", "result.json"))


def test_no_champion_is_a_clear_error(champion_run, batch, tmp_path):
    uri = scoring_run(champion_run, "nobody", write(tmp_path, batch.head(5), "b.csv"), model_name="never_trained")
    with pytest.raises(Refused, match="'never_trained' has no 'champion' version"):
        run_step("score", uri)


def test_a_batch_repeating_an_id_is_refused_naming_the_rows(champion_run, batch, tmp_path):
    loans = batch.assign(loan_id=[f"L{n}" for n in range(len(batch))])
    loans.loc[2400, "loan_id"] = "L5"  # the last chunk repeats an id of the first
    uri = scoring_run(champion_run, "repeated_ids", write(tmp_path, loans, "ids.csv"),
                      id_columns=["loan_id"], **{"scoring.chunk_rows": 1000})
    with pytest.raises(Refused, match=r"id_columns \['loan_id'\]: rows 6 and 2401 of .*ids.csv have the same id"):
        run_step("score", uri)
    assert not storage.exists(Run(uri).path("score", "result.json"))


def test_outputs_written_behind_are_numbered_in_chunk_order_and_a_failed_write_is_raised(tmp_path):
    from mlpipe.steps.score import written_behind

    outputs = {"a": datasets.PartWriter(uris.normalize(tmp_path / "a"))}
    with written_behind(outputs) as write:
        for rows in (3, 1, 2):
            write({"a": pd.DataFrame({"n": np.full(rows, rows)})})
    assert outputs["a"].rows == 6
    assert [len(pd.read_parquet(uris.local_path(uri))) for uri in outputs["a"].uris] == [3, 1, 2]
    (tmp_path / "blocked").write_text("a file where the output folder would be")
    outputs = {"b": datasets.PartWriter(uris.normalize(tmp_path / "blocked"))}
    with pytest.raises(FileExistsError, match="blocked"), written_behind(outputs) as write:
        write({"b": pd.DataFrame({"n": [1]})})  # fails in the worker, raised when the block ends
    with pytest.raises(FileExistsError, match="blocked"), written_behind(outputs) as write:
        write({"b": pd.DataFrame({"n": [1]})})
        write({"b": pd.DataFrame({"n": [2]})})  # raised here, at the next chunk's write
        raise AssertionError("the failed write was not raised at the next one")
    assert outputs["b"].rows == 0 and not outputs["b"].uris
