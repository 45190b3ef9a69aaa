"""mlpipe serve: the real server (uvicorn on localhost) in front of real registered XGBoost model versions."""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from mlpipe.core import spec, uris
from mlpipe.core.results import Train
from mlpipe.data.features import matrix
from mlpipe.registry.names import CHALLENGER, CHAMPION, THRESHOLD_TAG
from mlpipe.serving.app import VERSION_HEADER, create_app
from mlpipe.serving.capture import Capture
from mlpipe.store.runs import Run
from tests.fixtures.serving import CHALLENGER_THRESHOLD, predict, records, running, set_aliases, wait_ready

# --- scoring: inplace_predict on the encoded records is exactly TabularModel.scores --------------------------

def test_encoding_and_scores_match_the_training_path(champion, masked):
    schema = champion.model.schema
    rows = records(masked, schema["columns"])
    rows[0] = {**rows[0], "sub_grade": "Z9", "int_rate": None}  # an unseen level and a null: both missing
    reference = matrix(pd.DataFrame.from_records(rows, columns=schema["columns"]), schema)
    codes = np.column_stack([reference[c].cat.codes.to_numpy(np.float32) if c in schema["categorical"]
                             else reference[c].to_numpy(np.float32) for c in schema["columns"]])
    codes[codes == -1] = np.nan  # pandas marks a missing category as code -1
    np.testing.assert_array_equal(champion.encode(rows), codes)
    expected = champion.model.scores(pd.DataFrame.from_records(rows, columns=schema["columns"]))
    np.testing.assert_array_equal(champion.scores(rows), expected)
    assert champion.trees[1] > 0  # the best iteration, not every tree


def test_predict_one_and_many(server, champion, frame, masked, registry):
    columns = champion.model.schema["columns"]
    rows = records(frame.head(300), columns)
    expected = champion.model.scores(masked.head(300))  # the server masks PII as ingest did
    one = predict(server, rows[:1])
    assert one.status_code == 200 and one.headers[VERSION_HEADER] == "1"
    assert one.json()["model"] == {"name": registry["name"], "version": 1, "alias": CHAMPION}
    assert one.json()["predictions"][0]["score"] == float(expected[0])
    many = predict(server, rows).json()["predictions"]
    assert [p["score"] for p in many] == [float(s) for s in expected]
    threshold = registry["thresholds"][1]
    assert [p["decision"] for p in many] == [bool(s >= threshold) for s in expected]
    assert {p["decision"] for p in many} == {True, False}  # the threshold really splits them


def test_explain_contributions_sum_to_the_margin(server, champion, frame, masked):
    columns = champion.model.schema["columns"]
    response = httpx.post(f"{server}/explain", json={"records": records(frame.head(5), columns)}, timeout=30)
    assert response.status_code == 200 and response.headers[VERSION_HEADER] == "1"
    for explained, score in zip(response.json()["explanations"], champion.model.scores(masked.head(5)), strict=True):
        assert list(explained["contributions"]) == columns
        margin = sum(explained["contributions"].values()) + explained["bias"]
        assert explained["score"] == float(score)
        assert margin == pytest.approx(math.log(score / (1 - score)), abs=1e-4)


def test_metadata_names_version_data_and_schema(server, champion, registry):
    meta = httpx.get(f"{server}/metadata").json()
    tags = MlflowClient().get_model_version(registry["name"], "1").tags
    assert (meta["name"], meta["version"], meta["alias"]) == (registry["name"], 1, CHAMPION)
    assert meta["data_version"] == tags["mlpipe.data_version"]
    assert meta["threshold"] == registry["thresholds"][1]
    assert meta["feature_schema"] == champion.model.schema
    assert meta["challenger"]["version"] == 2 and meta["challenger"]["threshold"] == CHALLENGER_THRESHOLD


def without(record: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != field}


BAD_BODIES = [  # (body made from one good record, the field the 422 names, words of its message)
    pytest.param(lambda good: {"records": [{**good, "int_rate": "abc"}]},
                 ["body", "records", 0, "int_rate"], "valid number", id="text-for-a-number"),
    pytest.param(lambda good: {"records": [{**good, "int_rate": True}]},  # found by the fuzzer: was read as 1.0
                 ["body", "records", 0, "int_rate"], "valid number", id="boolean-for-a-number"),
    pytest.param(lambda good: {"records": [{**good, "int_rate": "13.99"}]},  # the same: was read as 13.99
                 ["body", "records", 0, "int_rate"], "valid number", id="numeric-text-for-a-number"),
    pytest.param(lambda good: {"records": [{**good, "int_rate": 1e39}]},  # would be inf as the model's float32
                 ["body", "records", 0, "int_rate"], "less than or equal to 3402823466385", id="past-float32"),
    pytest.param(lambda good: {"records": [{**good, "int_rate": math.nan}]},  # json.dumps writes NaN
                 ["body", "records", 0, "int_rate"], "finite number", id="nan"),
    pytest.param(lambda good: {"records": [{**without(good, "term"), "int_rate": math.nan}]},  # was a 500: the
                 ["body", "records", 0, "term"], "Field required", id="nan-in-a-record-missing-a-field"),  # echo
    pytest.param(lambda good: {"records": [good, {**good, "term": 36}]},
                 ["body", "records", 1, "term"], "valid string", id="number-for-a-category"),
    pytest.param(lambda good: {"records": [{**good, "nonsense": 1.0}]},
                 ["body", "records", 0, "nonsense"], "Extra inputs are not permitted", id="unknown-field"),
    pytest.param(lambda good: {"records": [without(good, "int_rate")]},
                 ["body", "records", 0, "int_rate"], "Field required", id="missing-field"),
    pytest.param(lambda good: {"records": []}, ["body", "records"], "at least 1 item", id="no-records"),
    pytest.param(lambda good: {"rows": [good]}, ["body", "rows"], "Extra inputs", id="unknown-key"),
    pytest.param(lambda good: {"records": good}, ["body", "records"], "valid array", id="records-not-a-list"),
    pytest.param(lambda good: [good], ["body"], "should be an object", id="not-an-object"),
    pytest.param(lambda good: b'{"records": [', ["body"], "Invalid JSON", id="malformed-json"),
    pytest.param(lambda good: b"\xff\xfe", ["body"], "Invalid JSON", id="not-utf8"),
]


@pytest.mark.parametrize(("make", "field", "message"), BAD_BODIES)
@pytest.mark.parametrize("endpoint", ["/predict", "/explain"])
def test_bad_input_is_a_422_naming_the_field(server, champion, frame, endpoint, make, field, message):
    body = make(records(frame.head(1), champion.model.schema["columns"])[0])
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(f"{server}{endpoint}", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(error["loc"] == field and message in error["msg"] for error in errors), errors


def test_metrics_count_requests_by_endpoint_status_and_version(server, champion, frame):
    predict(server, records(frame.head(1), champion.model.schema["columns"]))
    predict(server, [])
    text = httpx.get(f"{server}/metrics").text
    assert 'mlpipe_serve_requests_total{endpoint="/predict",status="200",version="1"}' in text
    assert 'mlpipe_serve_requests_total{endpoint="/predict",status="422",version=""}' in text
    assert 'mlpipe_serve_request_seconds_bucket{endpoint="/predict",le="0.01"}' in text
    assert 'mlpipe_serve_model_version{alias="champion"} 1.0' in text
    assert 'mlpipe_serve_model_version{alias="challenger"} 2.0' in text
    assert 'mlpipe_serve_reloads_total{result="changed"} 1.0' in text


# --- readiness, auth ------------------------------------------------------------------------------------------

def test_ready_only_once_a_champion_is_loaded(registry, analyzed_run, frame, tmp_path):
    late = spec.with_overrides(registry["spec"], {"model_name": "late_model"})
    with running(create_app(late, poll_seconds=3600, token="", capture=Capture(str(tmp_path), 0.0))) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.get(f"{url}/ready").status_code == 503
        row = records(frame.head(1), Run(analyzed_run).spec.feature_columns(list(frame.columns)))
        assert predict(url, row).status_code == 503
        assert body_schema(url) == {  # no champion yet: records of unknown features
            "type": "object", "required": ["records"], "additionalProperties": False, "properties": {
                "records": {"type": "array", "minItems": 1, "maxItems": 10_000, "items": {"type": "object"}}}}
        assert httpx.post(f"{url}/reload").json() == {"version": None, "changed": False}
        version = mlflow.register_model(Run(analyzed_run).result(Train).model_uri, "late_model",
                                        tags={THRESHOLD_TAG: "0.5"})
        set_aliases("late_model", champion=int(version.version))
        assert httpx.post(f"{url}/reload", timeout=60).json() == {"version": 1, "changed": True}
        assert httpx.get(f"{url}/ready").json() == {"status": "ready", "champion": 1, "challenger": None}
        assert predict(url, row).status_code == 200
        openapi = httpx.get(f"{url}/openapi.json").json()
    assert body_schema(url=None, openapi=openapi)["properties"]["records"] == {
        "items": {"$ref": "#/components/schemas/Record"}, "maxItems": 10_000, "minItems": 1, "title": "Records",
        "type": "array"}
    record = openapi["components"]["schemas"]["Record"]
    assert list(record["properties"]) == list(row[0]) and record["required"] == list(row[0])
    assert record["additionalProperties"] is False
    assert record["properties"]["term"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Term"}
    assert record["properties"]["int_rate"]["anyOf"][0] == {
        "type": "number", "minimum": -3.4028234663852886e38, "maximum": 3.4028234663852886e38}


def body_schema(url: str | None, openapi: dict[str, Any] | None = None) -> dict[str, Any]:
    """The request body schema /openapi.json gives /predict (and /explain, the same)."""
    openapi = openapi or httpx.get(f"{url}/openapi.json").json()
    bodies = [openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
              for path in ("/predict", "/explain")]
    assert bodies[0] == bodies[1]
    return bodies[0]


def test_bearer_token(registry, champion, frame, tmp_path):
    app = create_app(registry["spec"], poll_seconds=3600, token="s3cret", capture=Capture(str(tmp_path), 0.0))
    row = records(frame.head(1), champion.model.schema["columns"])
    with running(app) as url:
        wait_ready(url)
        assert httpx.get(f"{url}/health").status_code == 200
        assert predict(url, row).status_code == 401
        assert predict(url, row, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/metadata", headers={"Authorization": "Basic s3cret"}).status_code == 401
        answer = predict(url, row, headers={"Authorization": "Bearer s3cret"})
        assert answer.status_code == 200 and answer.headers[VERSION_HEADER] == "1"


# --- reload, A/B, shadow and capture ----------------------------------------------------------------------------

def test_reload_during_a_stream_of_requests_drops_none(registry, champion, frame, tmp_path):
    rows = records(frame.head(3), champion.model.schema["columns"])
    answers: list[tuple[int, str, float]] = []
    reloaded, stop = threading.Event(), threading.Event()

    def client_loop() -> None:
        with httpx.Client(timeout=30) as client:
            after = 0
            while not stop.is_set() and after < 20:
                response = client.post(f"{url}/predict", json={"records": rows})
                answers.append((response.status_code, response.headers.get(VERSION_HEADER, ""),
                                response.json()["predictions"][0]["decision"] if response.status_code == 200 else None))
                after += reloaded.is_set()

    app = create_app(registry["spec"], poll_seconds=3600, token="", capture=Capture(str(tmp_path), 0.0))
    try:
        with running(app) as url, ThreadPoolExecutor(6) as pool:
            wait_ready(url)
            workers = [pool.submit(client_loop) for _ in range(6)]
            time.sleep(0.5)
            set_aliases(registry["name"], champion=2)
            reload = httpx.post(f"{url}/reload", timeout=60).json()
            reloaded.set()
            for worker in workers:
                worker.result(timeout=120)
            assert reload == {"version": 2, "changed": True}
            assert predict(url, rows).headers[VERSION_HEADER] == "2"
    finally:
        stop.set()
        set_aliases(registry["name"], champion=1, challenger=2)
    assert {status for status, _, _ in answers} == {200}
    assert {version for _, version, _ in answers} == {"1", "2"}
    assert len(answers) >= 6 * 20


def test_ab_routes_the_challenger_fraction(registry, champion, frame, masked, tmp_path):
    ab = spec.with_overrides(registry["spec"], {"serving.challenger_fraction": 1.0})
    rows = records(frame.head(50), champion.model.schema["columns"])
    with running(create_app(ab, poll_seconds=3600, token="", capture=Capture(str(tmp_path), 0.0))) as url:
        wait_ready(url)
        response = predict(url, rows)
    assert response.headers[VERSION_HEADER] == "2"
    assert response.json()["model"]["alias"] == CHALLENGER
    scores = champion.model.scores(masked.head(50))  # the same booster: only the threshold differs
    assert [p["decision"] for p in response.json()["predictions"]] == [bool(s >= CHALLENGER_THRESHOLD)
                                                                       for s in scores]


def test_shadow_scores_and_capture_writes_batches(registry, champion, frame, masked, tmp_path):
    shadow = spec.with_overrides(registry["spec"], {"serving.shadow": True})
    root = uris.normalize(tmp_path / "captured")
    rows = records(frame.head(6), champion.model.schema["columns"])
    with running(create_app(shadow, poll_seconds=3600, token="", capture=Capture(root, 1.0, batch_rows=4))) as url:
        wait_ready(url)
        answers = [predict(url, rows[0:2]), predict(url, rows[2:4])]
        deadline = time.monotonic() + 30
        while not list((tmp_path / "captured").glob("*/*.jsonl")):  # 4 rows buffered: a batch is due
            assert time.monotonic() < deadline, "the full capture buffer was never flushed"
            time.sleep(0.05)
        answers.append(predict(url, rows[4:6]))
        assert {a.headers[VERSION_HEADER] for a in answers} == {"1"}  # the shadow never answers
    files = sorted((tmp_path / "captured").glob("*/*.jsonl"))
    assert len(files) == 2  # one batch flushed when 4 rows were buffered, the rest on shutdown
    captured = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    assert [row["record"] for row in captured] == records(masked.head(6), champion.model.schema["columns"])
    assert not {row["record"]["addr_state"] for row in captured} & set(frame["addr_state"]), "raw PII captured"
    predictions = [p for a in answers for p in a.json()["predictions"]]
    assert [(row["score"], row["decision"]) for row in captured] == [(p["score"], p["decision"]) for p in predictions]
    assert {row["model"]["version"] for row in captured} == {1}
    assert {row["endpoint"] for row in captured} == {"predict"}
    assert [row["shadow"] for row in captured] == [
        {"version": 2, "score": p["score"], "decision": p["score"] >= CHALLENGER_THRESHOLD} for p in predictions]


def test_explanations_are_captured_too(registry, champion, frame, masked, tmp_path):
    root = uris.normalize(tmp_path / "captured")
    rows = records(frame.head(3), champion.model.schema["columns"])
    with running(create_app(registry["spec"], poll_seconds=3600, token="", capture=Capture(root, 1.0))) as url:
        wait_ready(url)
        explained = httpx.post(f"{url}/explain", json={"records": rows}, timeout=30).json()["explanations"]
    captured = [json.loads(line) for path in (tmp_path / "captured").glob("*/*.jsonl")
                for line in path.read_text().splitlines()]  # written on shutdown
    assert [row["endpoint"] for row in captured] == ["explain"] * 3
    assert [row["record"] for row in captured] == records(masked.head(3), champion.model.schema["columns"])
    assert [(row["contributions"], row["bias"], row["score"]) for row in captured] == [
        (e["contributions"], e["bias"], e["score"]) for e in explained]


def test_capture_samples_its_fraction(tmp_path):
    draws = iter([0.1, 0.9, 0.29])
    capture = Capture(uris.normalize(tmp_path), 0.3, sample=lambda: next(draws))
    assert [capture.wanted() for _ in range(3)] == [True, False, True]
    assert Capture(uris.normalize(tmp_path), 0.0).wanted() is False
    assert capture.flush() is None and list(tmp_path.iterdir()) == []
