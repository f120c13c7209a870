"""Downloads, pinned by digest, into a content-addressed cache shared by all stores.

A download is streamed to a temporary file while being hashed; it enters the
cache only if its digests match the pins, so a wrong pin or a truncated transfer
never leaves anything behind. Local paths are hashed in place, not copied.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from .errors import FetchError, IntegrityError
from .net.redact import redact
from .net.retry import DOWNLOAD_ATTEMPTS, RetryPolicy
from .store import cache_home

if TYPE_CHECKING:
    import requests

    from .net.credentials import CredentialHook


def downloads_dir() -> Path:
    d = cache_home() / "downloads" / "sha256"
    d.mkdir(parents=True, exist_ok=True)
    return d


def is_url(ref: str) -> bool:
    return urlparse(ref).scheme in ("http", "https")


def _check(hashes: dict[str, hashlib._Hash], pins: dict[str, str], what: str) -> None:
    for algo, expected in pins.items():
        got = hashes[algo].hexdigest()
        if got != expected.lower():
            raise IntegrityError.mismatch(what, algo, expected, got)


def verify_local(path: Path, pins: dict[str, str]) -> Path:
    """Hash a local file against its pins (sha256 and/or sha512)."""
    if not path.is_file():
        raise FetchError(f"archive {path} does not exist")
    hashes = {algo: hashlib.new(algo) for algo in pins}
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            for h in hashes.values():
                h.update(chunk)
    _check(hashes, pins, str(path))
    return path


def fetch(url: str, pins: dict[str, str], *, session: requests.Session | None = None,
          policy: RetryPolicy | None = None, auth: CredentialHook | None = None,
          progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Return a cached, verified copy of `url`. `pins` maps sha256/sha512 to hex.

    Retried under `policy` (default: DOWNLOAD_ATTEMPTS): the request as any other, and
    the whole download again when its body breaks off half-way."""
    if not pins:
        raise IntegrityError(f"{redact(url)}: refusing an unpinned download "
                             "(give sha256 or sha512)")
    cached = downloads_dir() / pins["sha256"] if "sha256" in pins else None
    if cached is not None and cached.exists():
        return cached
    from .net.http import new_session, retrying  # here: warm runs never download

    sess = session or new_session()
    pol = policy or RetryPolicy(DOWNLOAD_ATTEMPTS)
    return retrying(pol, lambda: _download(sess, pol, auth, url, pins, progress),
                    method="GET", url=url)


def _download(sess: requests.Session, policy: RetryPolicy, auth: CredentialHook | None,
              url: str, pins: dict[str, str],
              progress: Callable[[int, int | None], None] | None) -> Path:
    from .net.http import request

    d = downloads_dir()
    tmp = d.parent / f"{os.getpid()}-{secrets.token_hex(6)}.part"
    hashes = {algo: hashlib.new(algo) for algo in {"sha256", *pins}}
    try:
        with request(sess, "GET", url, policy=policy, auth=auth, stream=True) as r:
            if not r.ok:
                spent = f" (after {policy.attempts} attempts)" \
                    if policy.retryable_status(r.status_code) else ""
                raise FetchError(f"GET {redact(url)}: HTTP {r.status_code}{spent}", url=url,
                                 status=r.status_code)
            total = int(r.headers["Content-Length"]) if "Content-Length" in r.headers else None
            with open(tmp, "wb") as out:
                for chunk in r.iter_content(1 << 20):
                    out.write(chunk)
                    for h in hashes.values():
                        h.update(chunk)
                    if progress:
                        progress(len(chunk), total)
                out.flush()
                os.fsync(out.fileno())
        _check(hashes, pins, redact(url))
        final = d / hashes["sha256"].hexdigest()
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)
