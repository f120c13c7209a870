"""A fault-injecting reverse proxy on 127.0.0.1 in front of a test registry.

It counts every body byte the client sends to an upload URL (so "bytes re-sent" is
measured outside the client), and on request: resets connections at given points of
the upload traffic, answers a seeded fraction of requests with 500 or with 429 +
Retry-After, or stalls every request after N blob uploads completed.

Uploads are store-and-forward by default (`stream_uploads=False`), as nginx does with
its default `proxy_request_buffering on`: a request cut off half-way never reaches the
registry. With `stream_uploads=True` the registry sees the partial body too.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_UPLOAD_RE = re.compile(r"/v2/(?P<repo>.+)/blobs/uploads/(?P<uuid>[^/?]*)")
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
        "upgrade", "proxy-authorization", "proxy-authenticate"}
BLOCK = 64 << 10


@dataclass
class Faults:
    reset_at: list[int] = field(default_factory=list)  # upload body byte counts
    error_rate: float = 0.0      # fraction of requests answered 500
    throttle_rate: float = 0.0   # fraction answered 429 with Retry-After
    retry_after: int = 1
    seed: int = 1
    stream_uploads: bool = False
    stall_after_uploads: int | None = None


@dataclass
class Logged:
    t: float
    method: str
    path: str
    status: int  # 0: connection reset by the proxy
    injected: bool


class FaultProxy:
    def __init__(self, upstream_port: int, faults: Faults | None = None) -> None:
        self.upstream_port = upstream_port
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._reset_points = sorted(self.faults.reset_at)
        self.log: list[Logged] = []
        self.upload_bytes = 0                       # all body bytes sent to upload URLs
        self.bytes_in = 0                           # every request body byte (clients -> registry)
        self.bytes_out = 0                          # every response body byte (registry -> clients)
        self.bytes_by_upload: dict[str, int] = {}   # upload uuid -> body bytes
        self.digest_of_upload: dict[str, str] = {}  # upload uuid -> digest it completed as
        self.completed_uploads = 0
        self.stalled = threading.Event()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- accounting --------------------------------------------------------------------

    def bytes_for(self, digest: str) -> int:
        return sum(n for u, n in self.bytes_by_upload.items()
                   if self.digest_of_upload.get(u) == digest)

    def count(self, method: str, pattern: str = "", status: int | None = None) -> int:
        return sum(1 for e in self.log if e.method == method and re.search(pattern, e.path)
                   and (status is None or e.status == status))

    def _record(self, method: str, path: str, status: int, injected: bool) -> None:
        with self._lock:
            self.log.append(Logged(time.monotonic(), method, path, status, injected))

    def _decide(self) -> int | None:
        with self._lock:
            r = self._rng.random()
        if r < self.faults.error_rate:
            return 500
        if r < self.faults.error_rate + self.faults.throttle_rate:
            return 429
        return None

    def _count_body(self, uuid: str, n: int) -> int | None:
        """Add n body bytes; returns how many of them to pass before a reset, if one."""
        with self._lock:
            cut = None
            if self._reset_points and self.upload_bytes + n >= self._reset_points[0]:
                cut = self._reset_points.pop(0) - self.upload_bytes
                n = cut
            self.upload_bytes += n
            self.bytes_by_upload[uuid] = self.bytes_by_upload.get(uuid, 0) + n
            return cut

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FaultProxy:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            upstream: http.client.HTTPConnection | None = None

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner._handle(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # -- one request -------------------------------------------------------------------

    def _handle(self, h: Any) -> None:
        method, path = h.command, h.path
        if self.faults.stall_after_uploads is not None \
                and self.completed_uploads >= self.faults.stall_after_uploads:
            self.stalled.set()
            self._release.wait()
            self._reset(h)
            return
        length = int(h.headers.get("Content-Length") or 0)
        m = _UPLOAD_RE.search(urlsplit(path).path)
        uuid = m["uuid"] if m else ""
        injected = self._decide()
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        stream = self.faults.stream_uploads and m is not None and injected is None
        conn = None
        if stream:
            conn = self._upstream(h)
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders()
        body = bytearray()
        left = length
        while left > 0:
            block = h.rfile.read(min(BLOCK, left))
            if not block:
                self._record(method, path, 0, False)
                self._drop_upstream(h)
                h.close_connection = True
                return
            left -= len(block)
            with self._lock:
                self.bytes_in += len(block)
            if m is not None:
                cut = self._count_body(uuid, len(block))
                if cut is not None:
                    if conn is not None:
                        conn.send(block[:cut])
                    self._record(method, path, 0, True)
                    self._drop_upstream(h)
                    self._reset(h)
                    return
            if conn is not None:
                conn.send(block)
            else:
                body += block
        if injected is not None:
            self._record(method, path, injected, True)
            self._answer(h, injected)
            return
        if conn is None:
            conn = self._upstream(h)
            conn.request(method, path, body=bytes(body), headers=headers)
        try:
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self._record(method, path, 0, False)
            self._drop_upstream(h)
            self._reset(h)
            return
        if m is not None and method == "PUT" and resp.status == 201:
            digest = parse_qs(urlsplit(path).query).get("digest", [""])[0]
            with self._lock:
                self.digest_of_upload[uuid] = digest
                self.completed_uploads += 1
        self._record(method, path, resp.status, False)
        with self._lock:
            self.bytes_out += len(data) if method != "HEAD" else 0
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP and k.lower() != "content-length":
                h.send_header(k, v)
        h.send_header("Content-Length", resp.getheader("Content-Length") or str(len(data))
                      if method == "HEAD" else str(len(data)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(data)

    def _upstream(self, h: Any) -> http.client.HTTPConnection:
        if h.upstream is None:
            h.upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=300)
        return h.upstream  # type: ignore[no-any-return]

    @staticmethod
    def _drop_upstream(h: Any) -> None:
        if h.upstream is not None:
            h.upstream.close()
            h.upstream = None

    def _answer(self, h: Any, status: int) -> None:
        body = (b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
                if status == 429 else b'{"errors":[{"code":"UNKNOWN","message":"injected"}]}')
        h.send_response(status)
        if status == 429:
            h.send_header("Retry-After", str(self.faults.retry_after))
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    @staticmethod
    def _reset(h: Any) -> None:
        """Close with RST, as a dropped connection looks to the client."""
        with contextlib.suppress(OSError):
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.close()
