"""A static file server on 127.0.0.1 for tests (archives, a PyPI simple index)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve(root: Path, handler_class: type[SimpleHTTPRequestHandler] = _Quiet
          ) -> Iterator[str]:
    """Serve `root` on an ephemeral loopback port; yields the base URL. A handler
    subclass can add behaviour (auth, injected failures)."""
    handler = functools.partial(handler_class, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
