"""Sessions, one attempt, and a request under the retry policy: the one HTTP path.

`new_session` makes every session (User-Agent, pool size, TLS verification).
`send` makes one attempt, attaching credentials through a `CredentialHook` and
answering at most one 401 challenge. `request` is `send` under a `RetryPolicy`;
`retrying` is the loop behind it, for work that repeats a whole transfer (a
download that restarts after a broken body). Nothing else in ociforge loops over
attempts, except transfers that resume themselves (see `net.retry`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict, TypeVar, Unpack

import requests
import urllib3
from requests.adapters import HTTPAdapter

from .. import __version__
from ..errors import FetchError, NetworkError
from .credentials import CredentialHook
from .redact import redact
from .retry import RetryPolicy

USER_AGENT = f"ociforge/{__version__} (+https://github.com/ociforge)"
TIMEOUT = (10.0, 60.0)  # seconds to connect, seconds between bytes read
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
    ConnectionError,
)
BodyFactory = Callable[[], Any]  # a fresh request body per attempt (streams are read once)
T = TypeVar("T")

# (substring of the error text, kind, reason), first match wins.
_REASONS = (
    ("Connection refused", "refused", "connection refused"),
    ("Name or service not known", "dns", "name not resolved"),
    ("Failed to resolve", "dns", "name not resolved"),
    ("Temporary failure in name resolution", "dns", "name not resolved"),
    ("nodename nor servname", "dns", "name not resolved"),
    ("Connection reset", "reset", "connection reset"),
    ("Broken pipe", "reset", "broken pipe"),
    ("Remote end closed", "reset", "connection closed by the server"),
    ("Connection broken", "reset", "connection broken"),
    ("Connection aborted", "reset", "connection aborted"),
    ("timed out", "timeout", "timed out"),
)


class _Adapter(HTTPAdapter):
    """Optionally bigger socket writes: streaming a 2 GB layer in urllib3's 16 KiB
    pieces costs CPU."""

    def __init__(self, send_block: int | None, **kwargs: Any) -> None:
        self._send_block = send_block  # before super().__init__, which builds the pool
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._send_block and int(urllib3.__version__.split(".")[0]) >= 2:
            kwargs["blocksize"] = self._send_block
        super().init_poolmanager(*args, **kwargs)


def new_session(*, pool_size: int = 10, verify: bool | str = True,
                user_agent: str = USER_AGENT, send_block: int | None = None
                ) -> requests.Session:
    """A session: our User-Agent, `pool_size` connections per host, no urllib3
    retries (the policy retries), `verify` True, False or a CA bundle path."""
    s = requests.Session()
    adapter = _Adapter(send_block, pool_maxsize=pool_size, max_retries=0)
    s.mount("https://", adapter)
    s.mount("http://", adapter)
    s.headers["User-Agent"] = user_agent
    s.verify = verify
    return s


class SendOptions(TypedDict, total=False):
    auth: CredentialHook | None
    headers: dict[str, str] | None
    body: BodyFactory | None
    stream: bool
    timeout: tuple[float, float]
    verify: bool | str | None
    allow_redirects: bool


def send(session: requests.Session, method: str, url: str, *,
         auth: CredentialHook | None = None, headers: dict[str, str] | None = None,
         body: BodyFactory | None = None, stream: bool = False,
         timeout: tuple[float, float] = TIMEOUT, verify: bool | str | None = None,
         allow_redirects: bool = True) -> requests.Response:
    """One attempt, answering at most one auth challenge. Network errors propagate.

    `verify` defaults to the session's and is passed on every request: `requests`
    lets `$REQUESTS_CA_BUNDLE` override a session-level CA file otherwise.
    """
    hdrs = dict(headers or {})
    sent = auth.header(url) if auth is not None else None
    if sent:
        hdrs["Authorization"] = sent

    def once() -> requests.Response:
        return session.request(method, url, headers=hdrs, data=body() if body else None,
                               stream=stream, timeout=timeout,
                               allow_redirects=allow_redirects,
                               verify=session.verify if verify is None else verify)

    resp = once()
    if resp.status_code == 401 and auth is not None:
        try:
            answer = auth.challenge(url, resp.headers.get("WWW-Authenticate"), sent)
        except BaseException:
            resp.close()
            raise
        if answer is not None:
            resp.close()
            hdrs["Authorization"] = answer
            resp = once()
    return resp


def request(session: requests.Session, method: str, url: str, *, policy: RetryPolicy,
            **options: Unpack[SendOptions]) -> requests.Response:
    """`send` under `policy`: retried on network errors and 408/429/5xx (honouring
    Retry-After). Returns the last answer, whatever its status (the caller knows what
    a 404 means); raises `NetworkError` when no answer came within the budget."""
    return retrying(policy, lambda: send(session, method, url, **options),
                    method=method, url=url)


def get_optional(attempt: Callable[[], requests.Response], url: str, what: str = ""
                 ) -> bytes | None:
    """The body of a GET for a file the server may lack: None on 404/410; no answer or
    any other status is a `FetchError` naming `what` (an artifact) and the URL."""
    prefix = f"{what}: " if what else ""
    try:
        r = attempt()
    except NetworkError as e:
        raise FetchError(f"{prefix}GET {redact(url)}: {e.reason}", url=url) from None
    with r:
        if r.status_code in (404, 410):
            return None
        if not r.ok:
            raise FetchError(f"{prefix}GET {redact(url)}: HTTP {r.status_code}", url=url,
                             status=r.status_code)
        return bytes(r.content)


def retrying(policy: RetryPolicy, attempt: Callable[[], T], *, method: str, url: str) -> T:
    """Call `attempt` until it gives a lasting result: the one retry loop.

    A network error is retried (TLS failures are not: they are configuration); so is
    a `requests.Response` with a retryable status, closed before the wait. When the
    budget is spent the last response is returned as it is, or `NetworkError` names
    the last reason. `method` and `url` only label the error (the URL redacted).
    """
    n = 0
    while True:
        n += 1
        try:
            result = attempt()
        except NETWORK_ERRORS as e:
            kind, why = classify(e)
            if kind.startswith("tls") or n >= policy.attempts:
                tries = f" after {n} attempts" if n > 1 else ""
                raise NetworkError(f"{method} {redact(url)} failed{tries}: {why}", url=url,
                                   reason=why, kind=kind, attempts=n) from None
            policy.wait(n)
            continue
        if isinstance(result, requests.Response) and n < policy.attempts \
                and policy.retryable_status(result.status_code):
            after = policy.retry_after(result.headers)
            result.close()
            policy.wait(n, after)
            continue
        return result


def classify(err: BaseException) -> tuple[str, str]:
    """(kind, reason) of a network failure: a stable name and a short reason that
    carries no URL (upload URLs hold opaque state, others credentials)."""
    text = str(err)
    if isinstance(err, requests.exceptions.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate" in text.lower():
            return "tls-untrusted", "TLS certificate not trusted"
        return "tls", "TLS error"
    for needle, kind, why in _REASONS:
        if needle in text:
            return kind, why
    if isinstance(err, requests.Timeout):
        return "timeout", "timed out"
    return "network", type(err).__name__


def reason(err: BaseException) -> str:
    """A short, secret-free reason for a network failure."""
    return classify(err)[1]
