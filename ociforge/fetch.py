"""Downloads, pinned by digest, into a content-addressed cache shared by all stores.

A download is streamed to a temporary file while being hashed; it enters the
cache (renamed into place) only if its digests match the pins, so a wrong pin or
a truncated transfer never leaves anything behind. Local paths are hashed in place,
not copied.

The cache is not trusted by its file names: every use of a cached file goes through
`cached` (or `obtain`, which adds the fall-back), which hashes it against its pins.
A file that does not match is moved to `quarantine/` beside the cache and fetched
again; where it cannot be fetched again, that is an `IntegrityError` naming the
quarantined file. A warm build hashes nothing: a layer found in the store never
calls its source's `populate`, the only phase that reads downloads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from .digests import CHUNK
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


def quarantine_dir() -> Path:
    """Where cached downloads that no longer match their pins are moved (kept, not
    deleted: they are evidence)."""
    d = cache_home() / "downloads" / "quarantine"
    d.mkdir(parents=True, exist_ok=True)
    return d


# Digests this process has computed of cache files, by path: (identity, {algorithm:
# hex}). The identity is inode, size, mtime and ctime (ctime cannot be set back by a
# writer), so several layers using one download in one build hash it once.
_Identity = tuple[int, int, int, int]
_digests: dict[Path, tuple[_Identity, dict[str, str]]] = {}
_digests_lock = threading.Lock()


def _identity(st: os.stat_result) -> _Identity:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _hash_file(path: Path, algorithms: set[str]) -> dict[str, hashlib._Hash]:
    hashes = {algo: hashlib.new(algo) for algo in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            for h in hashes.values():
                h.update(chunk)
    return hashes


def _file_digests(path: Path, st: os.stat_result, algorithms: set[str]) -> dict[str, str]:
    """{algorithm: hex} of a cache file as it was when `st` was taken (memoised)."""
    with _digests_lock:
        known = _digests.get(path)
    if known is not None and known[0] == _identity(st) and algorithms <= known[1].keys():
        return known[1]
    got = {a: h.hexdigest() for a, h in _hash_file(path, algorithms).items()}
    with _digests_lock:
        _digests[path] = (_identity(st), got)
    return got


def _remember(path: Path, hashes: dict[str, hashlib._Hash]) -> None:
    with _digests_lock:
        _digests[path] = (_identity(path.stat()), {a: h.hexdigest() for a, h in hashes.items()})


def cached(pins: dict[str, str]) -> Path | None:
    """The cached download with these pins, hashed and found matching; None when
    there is none, or when it did not match (it is then moved to `quarantine_dir()`).
    With `obtain`, the only way into the downloads cache."""
    return _lookup(pins)[0]


def _lookup(pins: dict[str, str]) -> tuple[Path | None, Path | None]:
    """(the verified cached file, where a mismatching one was quarantined)."""
    if "sha256" not in pins:
        return None, None  # the cache is named by sha256
    path = downloads_dir() / pins["sha256"].lower()
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, None
    got = _file_digests(path, st, {"sha256", *pins})
    if got["sha256"] == path.name:
        if any(got[a] != v.lower() for a, v in pins.items()):
            return None, None  # the right file, but another pin is wrong: say so on download
        return path, None
    return None, quarantine(path)


def quarantine(path: Path) -> Path:
    """Move a cached file (or a tool's cache directory) that failed verification to
    `quarantine_dir()`; returns where it went."""
    dest = quarantine_dir() / f"{path.name}.{time.time_ns()}"
    with contextlib.suppress(FileNotFoundError):  # another process moved it first
        os.replace(path, dest)
    return dest


def obtain(pins: dict[str, str], what: str, download: Callable[[], Path]) -> Path:
    """The verified cached copy, else `download()` (which must verify what it gets
    against `pins`). When a cached copy was quarantined and `download` cannot fetch
    (offline, an unreachable index or repository), an `IntegrityError` names the
    artifact and the quarantined file, instead of a network error."""
    hit, quarantined = _lookup(pins)
    if hit is not None:
        return hit
    try:
        return download()
    except FetchError as e:
        if quarantined is None:
            raise
        raise IntegrityError(
            f"{what}: the cached download does not match its pin; moved to {quarantined}, "
            f"and a fresh copy could not be fetched ({e})", subject=what) from None


def admit(path: Path, pins: dict[str, str]) -> Path:
    """Copy a local file into the cache if it matches its pins (a `.deb` apt has just
    fetched and verified at lock time); returns the cached copy."""
    hit = cached(pins)
    if hit is not None:
        return hit
    d = downloads_dir()
    tmp = d.parent / f"{os.getpid()}-{secrets.token_hex(6)}.part"
    try:
        shutil.copyfile(path, tmp)
        return _enter(tmp, _hash_file(tmp, {"sha256", *pins}), pins, str(path))
    finally:
        tmp.unlink(missing_ok=True)


def _enter(tmp: Path, hashes: dict[str, hashlib._Hash], pins: dict[str, str],
           what: str) -> Path:
    """Rename a hashed temporary file into the cache if it matches its pins."""
    _check(hashes, pins, what)
    final = downloads_dir() / hashes["sha256"].hexdigest()
    os.replace(tmp, final)
    _remember(final, hashes)
    return final


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
    _check(_hash_file(path, set(pins)), pins, str(path))
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

    def download() -> Path:
        from .net.http import new_session, retrying  # here: warm runs never download

        sess = session or new_session()
        pol = policy or RetryPolicy(DOWNLOAD_ATTEMPTS)
        return retrying(pol, lambda: _download(sess, pol, auth, url, pins, progress),
                        method="GET", url=url)

    return obtain(pins, redact(url), download)


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
        return _enter(tmp, hashes, pins, redact(url))
    finally:
        tmp.unlink(missing_ok=True)
