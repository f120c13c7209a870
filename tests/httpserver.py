"""A static file server on 127.0.0.1 for tests (archives, a PyPI simple index)."""

from __future__ import annotations

import functools
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseRequestHandler


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(root: Path, handler_class: type[SimpleHTTPRequestHandler] = _Quiet,
          tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """Serve `root` on an ephemeral loopback port; yields the base URL. A handler
    subclass can add behaviour (auth, injected failures); `tls` (certificate, key)
    makes it HTTPS."""
    with run_server(functools.partial(handler_class, directory=str(root)), tls) as url:
        yield url


@contextmanager
def run_server(handler: Callable[..., BaseRequestHandler],
               tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """Any request handler on an ephemeral loopback port; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Busy(_Quiet):
    """Answers `status` with `Retry-After` to the first `failures` requests (all of
    them when None), then serves files: a busy mirror. Subclass it per test with
    `busy()`; `log` records (method, path, status) of every request."""

    failures: int | None = 0
    status = 503
    retry_after: str | None = "1"
    log: list[tuple[str, str, int]] = []
    lock = threading.Lock()

    def _refuse(self) -> bool:
        cls = type(self)
        with cls.lock:
            left = cls.failures
            if left is not None and left <= 0:
                cls.log.append((self.command, self.path, 200))
                return False
            if left is not None:
                cls.failures = left - 1
            cls.log.append((self.command, self.path, cls.status))
        self.send_response(cls.status)
        if cls.retry_after is not None:
            self.send_header("Retry-After", cls.retry_after)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def do_GET(self) -> None:
        if not self._refuse():
            super().do_GET()

    def do_HEAD(self) -> None:
        if not self._refuse():
            super().do_HEAD()


def busy(failures: int | None, retry_after: str | None = "1", status: int = 503,
         base: type[Busy] = Busy) -> type[Busy]:
    """A `Busy` handler class with its own counter and log."""
    return type("BusyHandler", (base,), {"failures": failures, "retry_after": retry_after,
                                         "status": status, "log": [],
                                         "lock": threading.Lock()})
