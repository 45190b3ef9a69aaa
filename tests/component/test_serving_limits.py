"""mlpipe serve's request limits: ``serving.max_body_bytes`` and ``serving.max_records``, each a 413 past it.

A server with small limits (:data:`MAX_RECORDS` records, a body limit that fits one more):
exactly at a limit the request is answered, one past it is a 413 whose
detail names the size, the limit and the setting, for /predict and /explain, a body with a
Content-Length and a chunked one. A declared length past the limit is refused before a byte of the
body is sent. Nothing of a refused request is captured.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mlpipe.core import spec, uris
from mlpipe.serving.app import create_app
from mlpipe.serving.capture import Capture
from tests.fixtures.serving import records, running, wait_ready

MAX_RECORDS = 5
ENDPOINTS = ["/predict", "/explain"]


@pytest.fixture(scope="module")
def rows(champion, frame) -> list[dict[str, Any]]:
    return records(frame.head(MAX_RECORDS + 1), champion.model.schema["columns"])


@pytest.fixture(scope="module")
def max_body_bytes(rows) -> int:
    """Room for one more record than allowed: the record limit is reached before the body limit."""
    return len(body(rows)) + 100


@pytest.fixture(scope="module")
def limited(registry, max_body_bytes, tmp_path_factory) -> Iterator[str]:
    """A server with the small limits (capturing nothing)."""
    capture = Capture(uris.normalize(tmp_path_factory.mktemp("unused-capture")), 0.0)
    with running(create_app(small_limits(registry["spec"], max_body_bytes), poll_seconds=3600, token="",
                            capture=capture)) as url:
        wait_ready(url)
        yield url


def small_limits(served: spec.Spec, max_body_bytes: int) -> spec.Spec:
    return spec.with_overrides(served, {"serving.max_records": MAX_RECORDS, "serving.max_body_bytes": max_body_bytes})


def body(rows: list[dict[str, Any]], size: int | None = None) -> bytes:
    """``{"records": rows}`` as JSON, padded with trailing spaces (still valid JSON) to ``size`` bytes."""
    text = json.dumps({"records": rows}).encode()
    return text if size is None else text + b" " * (size - len(text))


def post(url: str, content: bytes | Iterator[bytes]) -> httpx.Response:
    """POST ``content``: bytes go with a Content-Length, an iterator chunked (no length)."""
    return httpx.post(url, content=content, headers={"content-type": "application/json"}, timeout=60)


def chunks(content: bytes, size: int = 1000) -> Iterator[bytes]:
    return (content[start:start + size] for start in range(0, len(content), size))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_body_exactly_at_the_limit_is_answered_one_byte_past_it_is_a_413(limited, rows, max_body_bytes, endpoint):
    url = limited + endpoint
    assert post(url, body(rows[:1], max_body_bytes)).status_code == 200
    refused = post(url, body(rows[:1], max_body_bytes + 1))
    assert refused.status_code == 413
    assert refused.json() == {"detail": f"request body of {max_body_bytes + 1} bytes exceeds the limit of "
                                        f"{max_body_bytes} bytes (serving.max_body_bytes)"}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_chunked_body_is_counted_as_it_arrives(limited, rows, max_body_bytes, endpoint):
    url = limited + endpoint
    assert post(url, chunks(body(rows[:1], max_body_bytes))).status_code == 200
    refused = post(url, chunks(body(rows[:1], max_body_bytes + 1)))
    assert refused.status_code == 413
    assert refused.json() == {"detail": f"request body of at least {max_body_bytes + 1} bytes exceeds the limit "
                                        f"of {max_body_bytes} bytes (serving.max_body_bytes)"}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_records_exactly_at_the_limit_are_answered_one_more_is_a_413(limited, rows, endpoint):
    url = limited + endpoint
    answered = post(url, body(rows[:MAX_RECORDS]))
    assert answered.status_code == 200
    assert len(answered.json()["predictions" if endpoint == "/predict" else "explanations"]) == MAX_RECORDS
    refused = post(url, body(rows[:MAX_RECORDS + 1]))
    assert refused.status_code == 413
    assert refused.json() == {"detail": f"request of {MAX_RECORDS + 1} records exceeds the limit of {MAX_RECORDS} "
                                        "records (serving.max_records)"}


def test_the_default_limits_take_10000_records_pretty_printed_and_refuse_a_byte_more(server, champion, frame):
    """The largest batch allowed, as a client may well send it (indented JSON), is answered by the spec's
    defaults; a body one byte past 8 MiB is refused, and the client reads the 413 (not a reset connection)."""
    defaults = spec.Serving()
    assert (defaults.max_records, defaults.max_body_bytes) == (10_000, 8 * 2**20)
    columns = champion.model.schema["columns"]
    batch = json.dumps({"records": records(frame, columns) * 25}, indent=2).encode()  # 400 rows x 25
    assert 6_000_000 < len(batch) < defaults.max_body_bytes
    answered = post(f"{server}/predict", batch)
    assert answered.status_code == 200 and len(answered.json()["predictions"]) == 10_000
    refused = post(f"{server}/predict", body(records(frame.head(1), columns), defaults.max_body_bytes + 1))
    assert refused.status_code == 413
    assert refused.json() == {"detail": "request body of 8388609 bytes exceeds the limit of 8388608 bytes "
                                        "(serving.max_body_bytes)"}


def test_a_declared_length_past_the_limit_is_refused_before_the_body_is_sent(limited, max_body_bytes):
    host, port = limited.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 1000000000000\r\n\r\n")  # a terabyte announced, nothing sent
        answer = connection.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413 ")
    assert answer.endswith('{"detail":"request body of 1000000000000 bytes exceeds the limit of '
                           f'{max_body_bytes} bytes (serving.max_body_bytes)"}}')


def test_refused_requests_are_not_captured(registry, rows, max_body_bytes, tmp_path):
    app = create_app(small_limits(registry["spec"], max_body_bytes), poll_seconds=3600, token="",
                     capture=Capture(uris.normalize(tmp_path), 1.0))
    with running(app) as url:
        wait_ready(url)
        statuses = [post(url + "/predict", body(rows)).status_code,
                    post(url + "/explain", body(rows[:1], max_body_bytes + 1)).status_code,
                    post(url + "/predict", chunks(body(rows[:1], max_body_bytes + 1))).status_code,
                    post(url + "/predict", body(rows[:2])).status_code]
        metrics = httpx.get(url + "/metrics").text
    assert statuses == [413, 413, 413, 200]
    assert 'mlpipe_serve_requests_total{endpoint="/predict",status="413",version=""} 2.0' in metrics
    assert 'mlpipe_serve_requests_total{endpoint="/explain",status="413",version=""} 1.0' in metrics
    captured = [json.loads(line) for path in tmp_path.glob("*/*.jsonl") for line in path.read_text().splitlines()]
    assert [(row["endpoint"], row["index"]) for row in captured] == [("predict", 0), ("predict", 1)]  # the 200 only
