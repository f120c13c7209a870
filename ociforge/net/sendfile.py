"""A request whose body is a range of a file, sent with sendfile(2) over plain HTTP.

Streaming a large body through requests copies every byte twice in Python (a read
from the page cache, then `sendall`): for a 700 MB push that is over a second of CPU,
most of what a push costs its own process on a busy machine, where crane (Go's
`io.Copy` from a file to a TCP socket) uses sendfile and next to none. Only plain HTTP
(a loopback or `--insecure` registry) with no proxy in the environment comes here;
TLS stays on the requests path. Network failures are raised as `ConnectionError`s,
so callers treat them like those of requests.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict
from requests.utils import get_environ_proxies

from ..errors import StoreCorruptError

BLOCK = 8 << 20  # bytes per sendfile call: progress and abort are checked between them


def usable(url: str) -> bool:
    """Plain HTTP, and no proxy from the environment that requests would honour."""
    return urlsplit(url).scheme == "http" and not get_environ_proxies(url)


class FileSender:
    """Keep-alive connections (one per thread and host) for file-bodied requests."""

    def __init__(self, timeout: float, user_agent: str) -> None:
        self.timeout = timeout
        self.user_agent = user_agent
        self._local = threading.local()

    def send(self, method: str, url: str, headers: dict[str, str], path: Path, start: int,
             length: int, sent: Callable[[int], None]) -> requests.Response:
        """One attempt; `sent(n)` after each block (it may raise to stop the body)."""
        parts = urlsplit(url)
        conn = self._conn(parts.netloc)
        try:
            conn.putrequest(method, parts.path + (f"?{parts.query}" if parts.query else ""),
                            skip_accept_encoding=True)
            for k, v in {"User-Agent": self.user_agent, **headers,
                         "Content-Length": str(length)}.items():
                conn.putheader(k, v)
            conn.endheaders()
            assert conn.sock is not None
            with open(path, "rb") as f:
                offset, left = start, length
                while left:
                    n = conn.sock.sendfile(f, offset, min(BLOCK, left))
                    if n == 0:
                        raise StoreCorruptError(f"blob file {path} is shorter than recorded")
                    offset, left = offset + n, left - n
                    sent(n)
            answer = conn.getresponse()
            body = answer.read()
        except BaseException as e:
            self._drop(parts.netloc)
            if isinstance(e, (http.client.HTTPException, TimeoutError)):
                raise ConnectionError(f"Connection broken: {e!r}") from e
            raise
        if answer.will_close:
            self._drop(parts.netloc)
        return _response(url, answer, body)

    def _conn(self, netloc: str) -> http.client.HTTPConnection:
        conns: dict[str, http.client.HTTPConnection] = self._local.__dict__.setdefault(
            "conns", {})
        if netloc not in conns:
            conns[netloc] = http.client.HTTPConnection(netloc, timeout=self.timeout)
        return conns[netloc]

    def _drop(self, netloc: str) -> None:
        conn = self._local.__dict__.get("conns", {}).pop(netloc, None)
        if conn is not None:
            conn.close()


def _response(url: str, answer: http.client.HTTPResponse, body: bytes) -> requests.Response:
    """The answer as a requests `Response` (read in full), for the callers' checks."""
    resp = requests.Response()
    resp.status_code = answer.status
    resp.reason = answer.reason
    resp.headers = CaseInsensitiveDict(answer.getheaders())
    resp.url = url
    resp._content = body
    resp._content_consumed = True  # type: ignore[attr-defined]
    return resp
