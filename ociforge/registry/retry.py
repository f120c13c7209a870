"""When to retry a registry request and how long to wait first.

Retries cover what a busy registry or a flaky network does (408, 429, 5xx, resets);
never 4xx answers about the request itself, and never authentication failures,
which would only lock an account faster.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass, field

import requests

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
    ConnectionError,
)
MAX_RETRY_AFTER_S = 120.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse `Retry-After` (seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when - (now if now is not None else time.time())), MAX_RETRY_AFTER_S)


@dataclass
class RetryPolicy:
    """Exponential backoff with full jitter; a server's Retry-After wins when given."""

    attempts: int = 6
    base_s: float = 0.25
    cap_s: float = 15.0
    rng: random.Random = field(default_factory=random.Random)
    retries: int = 0  # retries made so far, across threads (for the report)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        if retry_after is not None:
            return retry_after
        return self.rng.uniform(0, min(self.cap_s, self.base_s * (2 ** attempt)))

    def wait(self, attempt: int, retry_after: float | None = None) -> None:
        with self._lock:
            self.retries += 1
        time.sleep(self.delay(attempt, retry_after))

    @staticmethod
    def should_retry_status(status: int) -> bool:
        return status in RETRY_STATUSES
