"""How a failed call to the MLflow tracking server is told apart: the server unavailable (exit 3, retried) or not."""

from __future__ import annotations

import socket
import threading

import pytest
from mlflow import MlflowClient

from mlpipe.core.errors import UNAVAILABLE, failure
from mlpipe.registry import tracking


@pytest.fixture
def breaking_server():
    """A server on localhost that answers every request with a body cut off midway (as one dying mid-answer)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                   b"Content-Length: 3799\r\n\r\n{\"experiment\": ")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()
    thread.join(timeout=5)


def test_an_answer_broken_off_midway_is_the_server_being_unavailable(breaking_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", breaking_server)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(Exception) as failed:
        MlflowClient().get_experiment("0")
    assert tracking.unreachable(failed.value) == (
        f"MLflow tracking server {breaking_server} did not answer (ChunkedEncodingError on "
        "/api/2.0/mlflow/experiments/get after 0 retries, MLFLOW_HTTP_REQUEST_MAX_RETRIES); retry once it is back")
    assert failure(tracking.classified(failed.value))[0] == UNAVAILABLE


def test_a_failure_of_another_server_is_not_the_tracking_server(breaking_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # the tracking server is elsewhere
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(Exception) as failed:
        MlflowClient(tracking_uri=breaking_server).get_experiment("0")
    assert tracking.unreachable(failed.value) is None
