"""Reason codes of declined records (adverse action): the real server and the real score step on a registered
XGBoost model, checked against :meth:`TabularModel.contributions` recomputed here; the spec keys; the warnings of
``mlpipe profile``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from mlpipe.core import spec, uris
from mlpipe.data.columns import reason_warnings
from mlpipe.data.profile import write_profile
from mlpipe.model.tabular import TabularModel
from mlpipe.serving.app import create_app
from mlpipe.serving.capture import Capture
from mlpipe.steps import run_step
from mlpipe.store import runs, storage
from tests.conftest import DATA_PATH, SPEC_PATH
from tests.fixtures.serving import predict, records, running, wait_ready

ROWS = 400  # the `frame` fixture's rows


def expected_reasons(model: TabularModel, masked: pd.DataFrame, threshold: float, texts: dict[str, str],
                     count: int) -> list[list[dict[str, Any]]]:
    """Each row's reasons, worked out here from the model's SHAP contributions: a declined row's features of positive
    contribution, largest first (ties in feature order), at most ``count``; an approved row's none."""
    columns, categorical = model.schema["columns"], model.schema["categorical"]
    contributions = model.contributions(masked)
    found = []
    for (index, row), score in zip(contributions.iterrows(), model.scores(masked), strict=True):
        ranked = sorted((c for c in columns if row[c] > 0), key=lambda c: (-row[c], columns.index(c)))
        found.append([] if score < threshold else [
            {"feature": c, "text": texts.get(c, c), "contribution": float(row[c]),
             "value": None if pd.isna(value := masked.at[index, c]) else str(value) if c in categorical
             else float(value)} for c in ranked[:count]])
    return found


@pytest.fixture(scope="module")
def reasons_spec(registry, champion, masked) -> spec.Spec:
    """The registry's spec without the text of the feature most often a reason: its reasons show the column name."""
    served = registry["spec"]
    full = expected_reasons(champion.model, masked, champion.threshold, served.reasons, served.reason_count)
    common, _ = Counter(reason["feature"] for reasons in full for reason in reasons).most_common(1)[0]
    return spec.with_overrides(served, {"reasons": {k: v for k, v in served.reasons.items() if k != common}})


@pytest.fixture(scope="module")
def answered(reasons_spec, champion, frame, tmp_path_factory) -> dict[str, Any]:
    """What a real server of ``reasons_spec`` answers for the ``frame`` records in one request, then one by one in
    reverse order, and its OpenAPI document."""
    rows = records(frame, champion.model.schema["columns"])
    capture = Capture(uris.normalize(tmp_path_factory.mktemp("capture")), 0.0)
    with running(create_app(reasons_spec, poll_seconds=3600, token="", capture=capture)) as url:
        wait_ready(url)
        together = predict(url, rows)
        alone = [predict(url, [row]).json()["predictions"][0] for row in reversed(rows[:80])]
        openapi = httpx.get(f"{url}/openapi.json").json()
    assert together.status_code == 200, together.text
    return {"together": together.json()["predictions"], "alone": alone[::-1], "openapi": openapi}


def batch_predictions(pipeline: spec.Spec, frame: pd.DataFrame, folder, run_id: str) -> pd.DataFrame:
    """The predictions the real score step writes for ``frame`` (raw rows, PII in clear) with the champion."""
    path = folder / f"{run_id}.csv"
    frame.to_csv(path, index=False)
    run = runs.start(pipeline, run_id, options={"input_uri": path.as_uri()}, kind=runs.SCORING)
    folder = run_step("score", run)["predictions"]
    return pd.concat([storage.read_parquet(uris.join(folder, name)) for name in storage.children(folder)],
                     ignore_index=True)


def test_a_declined_record_gets_its_top_positive_contributions_with_the_specs_texts(answered, reasons_spec,
                                                                                     champion, masked):
    expected = expected_reasons(champion.model, masked, champion.threshold, reasons_spec.reasons,
                                reasons_spec.reason_count)
    served = answered["together"]
    assert [p["reasons"] for p in served] == expected
    declined = [p for p in served if p["decision"]]
    assert 0 < len(declined) < ROWS and all(p["reasons"] for p in declined)
    assert all(p["reasons"] == [] for p in served if not p["decision"])  # approved: none
    assert {len(p["reasons"]) for p in declined} <= {1, 2, 3, 4} and 4 in {len(p["reasons"]) for p in declined}
    given = [reason for p in declined for reason in p["reasons"]]
    untexted = set(champion.model.schema["columns"]) - set(reasons_spec.reasons)
    assert len(untexted) == 1 and {r["text"] for r in given if r["feature"] in untexted} == untexted  # the column
    assert all(r["text"] == reasons_spec.reasons[r["feature"]] for r in given if r["feature"] not in untexted)


def test_a_hashed_pii_column_is_shown_hashed_never_in_clear(registry, champion, frame, masked, tmp_path):
    every = spec.with_overrides(registry["spec"], {"reason_count": len(champion.model.schema["columns"])})
    with running(create_app(every, poll_seconds=3600, token="", capture=Capture(str(tmp_path), 0.0))) as url:
        wait_ready(url)
        served = predict(url, records(frame, champion.model.schema["columns"])).json()["predictions"]
    states = [(at, r["value"]) for at, p in enumerate(served) for r in p["reasons"] if r["feature"] == "addr_state"]
    assert states, "no declined record has its state among its reasons: nothing shows how PII is shown"
    assert all(value == masked["addr_state"].iloc[at] for at, value in states)  # the keyed hash the model saw
    assert not {value for _, value in states} & set(frame["addr_state"]), "a state shown in clear"


def test_the_server_and_batch_scoring_give_the_same_reasons_deterministically(answered, reasons_spec, frame,
                                                                              tmp_path):
    batch = batch_predictions(reasons_spec, frame, tmp_path, "reasons_batch")
    served = answered["together"]
    assert batch["decision"].tolist() == [p["decision"] for p in served]
    assert [json.loads(text) for text in batch["reasons"]] == [p["reasons"] for p in served]
    assert (batch.loc[~batch["decision"], "reasons"] == "[]").all()
    assert answered["alone"] == served[:80]  # one record at a time, in reverse order: the same reasons


def test_reason_count_0_gives_no_reasons(registry, champion, frame, tmp_path):
    off = spec.with_overrides(registry["spec"], {"reason_count": 0})
    with running(create_app(off, poll_seconds=3600, token="", capture=Capture(str(tmp_path), 0.0))) as url:
        wait_ready(url)
        served = predict(url, records(frame.head(50), champion.model.schema["columns"])).json()["predictions"]
    assert {tuple(p) for p in served} == {("score", "decision")}
    assert "reasons" not in batch_predictions(off, frame.head(50), tmp_path, "no_reasons").columns


def test_openapi_describes_the_reasons_of_a_prediction(answered):
    openapi = answered["openapi"]
    answer = openapi["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/Predicted"}
    schemas = openapi["components"]["schemas"]
    assert list(schemas["Reason"]["properties"]) == ["feature", "text", "value", "contribution"]
    assert schemas["Prediction"]["properties"]["reasons"]["anyOf"][0] == {
        "type": "array", "items": {"$ref": "#/components/schemas/Reason"}}


# --- the spec keys -------------------------------------------------------------------------------------------------

def test_the_shipped_spec_words_every_feature(loan_spec, loans):
    assert reason_warnings(loan_spec, loan_spec.feature_columns(list(loans.columns))) == []
    assert loan_spec.reason_count == 4


@pytest.mark.parametrize(("changes", "message"), [
    ({"reasons": {"int_rate": "Interest rate"}},
     r"reasons: reason codes explain a declined record .*; this target is regression"),
    ({"reason_count": 2}, r"reason_count: for binary targets only; this one is regression"),
])
def test_reasons_on_a_regression_spec_are_an_error_naming_the_key(changes, message):
    document = yaml.safe_load(SPEC_PATH.with_name("loan_rate.yaml").read_text())
    assert spec.parse(document).target.task == "regression"
    with pytest.raises(spec.SpecError, match=message):
        spec.parse({**document, **changes})


def test_a_reason_text_of_no_column_warns_and_one_of_the_target_is_an_error(pipeline_env, loan_spec, tmp_path,
                                                                             caplog):
    misspelt = spec.with_overrides(loan_spec, {"reasons": {**loan_spec.reasons, "int_rte": "Interest rate"}})
    write_profile(misspelt, uris.normalize(tmp_path / "profile.json"))
    assert [record.getMessage() for record in caplog.records if record.name == "mlpipe.data.profile"] == [
        "reasons.int_rte: 'int_rte' is not a feature of the model (an id, excluded, dropped PII or no column of the "
        "data); its text is not used"]
    with pytest.raises(spec.SpecError, match=r"reasons\.Class: the target column is what the model predicts"):
        spec.with_overrides(loan_spec, {"reasons": {**loan_spec.reasons, "Class": "Outcome"}})


def test_the_text_of_a_column_the_spec_keeps_out_of_the_features_is_a_warning(pipeline_env, loan_spec, tmp_path,
                                                                               caplog):
    """A trigger option that drops a column (``pii``) or excludes it must not also have to drop its text."""
    dropping = spec.with_overrides(loan_spec, {"pii": [{"column": "addr_state", "action": "drop"}],
                                               "features.exclude": ["int_rate"]})
    write_profile(dropping, uris.normalize(tmp_path / "profile.json"))
    assert [record.getMessage() for record in caplog.records if record.name == "mlpipe.data.profile"] == [
        f"reasons.{name}: {name!r} is not a feature of the model (an id, excluded, dropped PII or no column of the "
        "data); its text is not used" for name in ("int_rate", "addr_state")]  # in the order of the spec's texts


def test_profile_warns_on_stderr_and_in_its_result_of_each_feature_without_text(pipeline_env, tmp_path):
    document = yaml.safe_load(SPEC_PATH.read_text())
    document["data"]["source"] = DATA_PATH.as_uri()
    document["reasons"] = {k: v for k, v in document["reasons"].items() if k not in ("int_rate", "addr_state")}
    path = tmp_path / "worded.yaml"
    path.write_text(yaml.safe_dump(document))
    output = tmp_path / "worded.profile.json"
    done = subprocess.run([sys.executable, "-m", "mlpipe", "profile", str(path), "--output", str(output)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    warnings = [f"reasons: feature {name!r} has no text; its reason codes show the column name"
                for name in ("int_rate", "addr_state")]
    logged = "WARNING mlpipe.data.profile: "
    assert [line.split(logged)[1] for line in done.stderr.splitlines() if logged in line] == warnings  # data order
    assert [line.strip() for line in done.stdout.splitlines() if "warning" in line] == [
        f"warning: {warning}" for warning in sorted(warnings, key=lambda w: w.split("'")[1])]
    assert json.loads(output.read_text()) == json.loads(SPEC_PATH.with_name("loan_default.profile.json").read_text())
