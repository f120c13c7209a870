"""Request bodies sent by sendfile(2) (plain-HTTP pushes): the server receives exactly
the file range, keep-alive connections are reused, and a push that aborts mid-body
stops sending and leaves no broken connection behind for the next request."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ociforge.net.sendfile import BLOCK, FileSender, usable


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: list[bytes] = []
    peers: list[tuple[str, int]] = []

    def do_PATCH(self) -> None:
        n = int(self.headers["Content-Length"])
        _Sink.bodies.append(self.rfile.read(n))
        _Sink.peers.append(self.client_address)
        self.send_response(202)
        self.send_header("Range", f"0-{n - 1}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Sink.bodies, _Sink.peers = [], []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v2/r/blobs/uploads/u1"
    srv.shutdown()
    srv.server_close()


def test_sends_exactly_the_range_on_one_connection(server: str, tmp_path: Path) -> None:
    data = os.urandom(2 * BLOCK + 12345)
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    sender = FileSender(30, "test")
    seen: list[int] = []
    a = sender.send("PATCH", server, {}, blob, 0, BLOCK + 7, seen.append)
    b = sender.send("PATCH", server + "?x=1", {}, blob, BLOCK + 7, len(data) - BLOCK - 7,
                    seen.append)
    assert (a.status_code, b.status_code) == (202, 202)
    assert a.headers["range"] == f"0-{BLOCK + 6}"
    assert b"".join(_Sink.bodies) == data
    assert sum(seen) == len(data)
    assert _Sink.peers[0] == _Sink.peers[1]  # kept alive


def test_an_abort_mid_body_drops_the_connection(server: str, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(3 * BLOCK))
    sender = FileSender(30, "test")

    def stop(n: int) -> None:
        raise RuntimeError("push aborted")

    with pytest.raises(RuntimeError):
        sender.send("PATCH", server, {}, blob, 0, 3 * BLOCK, stop)
    ok = sender.send("PATCH", server, {}, blob, 0, 10, lambda n: None)  # a new connection
    # (the aborted request's partial body may be logged before or after this one)
    assert ok.status_code == 202 and blob.read_bytes()[:10] in _Sink.bodies


def test_only_plain_http_without_a_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    assert usable("http://127.0.0.1:5000/v2/")
    assert not usable("https://127.0.0.1:5000/v2/")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    assert not usable("http://registry.invalid/v2/")
