"""The reference profile: what it records, that it is deterministic, key-independent and PII-free."""

from __future__ import annotations

import json

import pytest

from mlpipe.core import spec, uris
from mlpipe.core.errors import Refused
from mlpipe.data.pii import keyed_hash
from mlpipe.data.profile import write_profile
from mlpipe.store import storage
from tests.conftest import SPEC_PATH

SHIPPED = SPEC_PATH.with_name("loan_default.profile.json")


@pytest.fixture
def profile_bytes(loan_spec, tmp_path, monkeypatch):
    """Write the bundled spec's profile with a given PII key; return the file's bytes."""
    def make(key: str, name: str) -> bytes:
        monkeypatch.setenv("MLPIPE_PII_KEY", key)
        return storage.read_bytes(write_profile(loan_spec, str(tmp_path / f"{name}.json")))

    return make


def test_profile_records_types_ranges_categories_and_rate(profile_bytes, loans):
    profile = json.loads(profile_bytes("key-a", "profile"))
    assert profile["rows"] == len(loans) == 9857
    assert profile["target"] == {"column": "Class", "positive_class": "bad",
                                 "positive_rate": round(517 / 9857, 6)}
    assert set(profile["columns"]) == set(loans.columns)
    assert profile["columns"]["annual_inc"] == {
        "kind": "numeric", "type": "numeric", "null_fraction": 0.0,
        "min": loans["annual_inc"].min(), "max": loans["annual_inc"].max()}
    assert profile["columns"]["term"] == {"kind": "categorical", "type": "string", "null_fraction": 0.0,
                                          "categories": ["term_36", "term_60"]}
    assert profile["columns"]["Class"]["categories"] == ["bad", "good"]
    assert len(profile["columns"]["sub_grade"]["categories"]) == loans["sub_grade"].nunique() == 35


def test_profile_is_deterministic_key_independent_and_holds_no_pii(profile_bytes, loans):
    first = profile_bytes("key-a", "first")
    assert profile_bytes("key-a", "second") == first
    assert profile_bytes("another-key", "third") == first
    text = first.decode()
    raw_states = set(loans["addr_state"])
    assert not [state for state in raw_states if json.dumps(state) in text]
    hashed = keyed_hash(loans["addr_state"], b"key-a")
    assert not [digest for digest in set(hashed) if digest in text]
    assert json.loads(text)["columns"]["addr_state"] == {
        "kind": "categorical", "type": "string", "null_fraction": 0.0, "pii": "hash"}


def test_shipped_profile_matches_the_bundled_data(profile_bytes):
    assert json.loads(profile_bytes("any-key", "fresh")) == json.loads(SHIPPED.read_text())


def test_profile_goes_to_the_spec_path_by_default(loan_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("MLPIPE_PII_KEY", "key")
    target = uris.normalize(tmp_path / "ref.json")
    written = write_profile(spec.with_overrides(loan_spec, {"validation.profile": target}))
    assert written == target and json.loads(storage.read_bytes(written))["rows"] == 9857


def test_dropped_pii_column_is_left_out(loan_spec, tmp_path, monkeypatch):
    monkeypatch.delenv("MLPIPE_PII_KEY", raising=False)  # a drop rule needs no key
    dropping = spec.with_overrides(loan_spec, {
        "pii": [{"column": "addr_state", "action": "drop"}],
        "features.categorical": ["term", "sub_grade", "verification_status", "emp_length"]})
    profile = storage.read_json(write_profile(dropping, str(tmp_path / "p.json")))
    assert "addr_state" not in profile["columns"] and len(profile["columns"]) == 22


def test_profile_errors_name_what_is_missing(loan_spec, tmp_path, monkeypatch):
    monkeypatch.delenv("MLPIPE_PII_KEY", raising=False)
    output = tmp_path / "p.json"
    with pytest.raises(Refused, match=r"addr_state.*MLPIPE_PII_KEY"):
        write_profile(loan_spec, str(output))
    with pytest.raises(spec.SpecError, match=r"validation\.profile is not set"):
        write_profile(spec.with_overrides(loan_spec, {"validation.profile": None}))
    monkeypatch.setenv("MLPIPE_PII_KEY", "key")
    with pytest.raises(spec.SpecError, match=r"target\.column: 'Status' is not a column of file://.*lending_club"):
        write_profile(spec.with_overrides(loan_spec, {"target.column": "Status"}), str(output))
    assert not output.exists()


def test_a_profile_read_in_batches_is_the_profile_of_all_rows(loan_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("MLPIPE_PII_KEY", "key-a")
    whole = storage.read_json(write_profile(loan_spec, str(tmp_path / "whole.json")))
    batched_spec = spec.with_overrides(loan_spec, {"data.batch_rows": 700})  # 15 batches
    batched = storage.read_json(write_profile(batched_spec, str(tmp_path / "batched.json")))
    assert batched == whole
    assert whole == json.loads(SHIPPED.read_text())  # and both are the committed reference profile
