"""Faults for tests: a TCP forwarder to a real server that can be cut (an outage) and resumed, or made to
answer the next requests itself with an HTTP error (a 5xx, throttling, a refusal)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from tests.conftest import free_port

CHUNK = 64 * 1024


class CuttableProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target`` until :meth:`cut`, which refuses new connections and
    drops the open ones (as a server that goes away does) until :meth:`resume`. After :meth:`fail_next`,
    the next connections get an HTTP error answer instead of the target.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.connections: set[socket.socket] = set()
        self.failures: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.resume()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def resume(self) -> None:
        """Listen (again) on the same port and forward every connection."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Stop listening (connections are refused) and close every open connection."""
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of its thread
            listener.close()
        with self.lock:
            for sock in self.connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.connections.clear()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """The endpoint is down inside the block."""
        self.cut()
        try:
            yield
        finally:
            self.resume()

    def fail_next(self, *failures: tuple[int, str]) -> None:
        """Answer the next connections' first request with these ``(HTTP status, S3 error code)``, then close."""
        self.failures += failures

    def close(self) -> None:
        self.cut()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # the listener was cut
                return
            if self.failures:
                answer_error(client, *self.failures.pop(0))
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                if self.listener is not listener:  # cut while this connection was being set up
                    client.close()
                    server.close()
                    return
                self.connections |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        with self.lock:  # one side closed: close the pair (HTTP clients never half-close)
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                self.connections.discard(sock)


def answer_error(client: socket.socket, status: int, code: str) -> None:
    """Read one HTTP request from ``client``, answer it with an S3 error document, and close the connection."""
    with client, client.makefile("rb") as request:
        headers = {}
        while (line := request.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("expect") != "100-continue":  # else the client waits for an answer before the body
            request.read(int(headers.get("content-length", 0)))
        body = f"<Error><Code>{code}</Code><Message>injected by tests.faults</Message></Error>".encode()
        client.sendall(f"HTTP/1.1 {status} {code}\r\nContent-Type: application/xml\r\n"
                       f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
