"""When to retry a request and how long to wait first: one policy for every caller.

Retried: what a busy server or a flaky network does (408, 429, 500, 502, 503, 504,
resets, refused connections, timeouts). Never retried: other 4xx answers, which are
about the request itself, and authentication failures (401, 403), which would only
lock an account faster; nor TLS failures, which are configuration, not weather.

Two ways to use it: `net.http.request` / `net.http.retrying` for anything that can
be repeated from scratch (a request, a download that restarts); or, for a transfer
that resumes itself and keeps its own failure count (a chunked upload), the
primitives `retryable_status`, `retry_after`, `wait` and `attempts`.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 120.0
DOWNLOAD_ATTEMPTS = 3  # a build's budget: its downloads come, or it fails fast


def retry_after_seconds(value: str | None, now: float | None = None,
                        cap: float = MAX_RETRY_AFTER_S) -> float | None:
    """Parse `Retry-After` (seconds or an HTTP date), capped; None when absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when - (now if now is not None else time.time())), cap)


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After wins when given.

    `attempts` is the budget: tries in all, the first included. `sleep` is how the
    policy waits (tests pass a recorder). `retries` counts the waits made, across
    threads, for reports.
    """

    attempts: int = 6
    base_s: float = 0.25
    cap_s: float = 15.0
    max_retry_after_s: float = MAX_RETRY_AFTER_S
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after_s)
        return self.rng.uniform(0, min(self.cap_s, self.base_s * (2 ** attempt)))

    def wait(self, attempt: int, retry_after: float | None = None) -> None:
        with self._lock:
            self.retries += 1
        self.sleep(self.delay(attempt, retry_after))

    def retry_after(self, headers: Mapping[str, str]) -> float | None:
        """The wait a response's `Retry-After` header asks for, capped."""
        return retry_after_seconds(headers.get("Retry-After"), cap=self.max_retry_after_s)

    @staticmethod
    def retryable_status(status: int) -> bool:
        return status in RETRY_STATUSES
