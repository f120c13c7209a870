"""Moving one blob from the store into a registry, streamed from its file.

Small blobs go as one PUT. A large one goes as one streamed PATCH (`streamed`: the
registry hashes and stores it without a pause per chunk, as crane does), or as PATCH
chunks of `chunk_size`; when a request fails (a reset, a 5xx, a 429) the upload's
`Range` is queried and the upload goes on from what the registry holds, in chunks from
then on, so after a first drop each further one costs at most one chunk.
A registry that discarded the upload (distribution 2.x does, once a PATCH broke off
half-way) gets a fresh upload session: slower, still correct.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from ..errors import OciforgeError, StoreCorruptError
from ..net.http import NETWORK_ERRORS, reason
from ..store import hash_file_matches
from . import RegistryError
from .client import RegistryClient, add_query, error_codes, error_detail

Progress = Callable[[int], None]  # absolute bytes of this blob known to be sent


class FileRange:
    """A window of a file as a request body: read in blocks, never whole."""

    def __init__(self, path: Path, start: int, length: int, counter: Counter,
                 progress: Progress | None = None) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 (closed by requests' body handling or close())
        self._f.seek(start)
        self._start = start
        self._left = length
        self._length = length
        self._counter = counter
        self._progress = progress

    def __len__(self) -> int:
        return self._length

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            self._f.close()
            return b""
        want = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(want)
        if not data:
            raise StoreCorruptError(f"blob file {self._f.name} is shorter than recorded")
        self._left -= len(data)
        self._counter.add(len(data))
        if self._progress:
            self._progress(self._start + self._length - self._left)
        return data

    def close(self) -> None:
        self._f.close()


class Aborted(OciforgeError):
    """Another blob of the same push failed: stop sending this one."""


class Counter:
    """Bytes sent, summed across threads (resent bytes count again: that is the point).
    Setting `abort` makes every body being streamed stop at its next block."""

    def __init__(self) -> None:
        self.value = 0
        self.abort = threading.Event()
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        if self.abort.is_set():
            raise Aborted("push aborted")
        with self._lock:
            self.value += n


@dataclass
class UploadResult:
    resumed: int = 0    # times an interrupted chunked upload went on where it stopped
    restarted: int = 0  # times the registry lost the upload and it began again


class BlobUpload:
    """Upload `path` (which hashes to `digest`) into `repo`."""

    def __init__(self, client: RegistryClient, repo: str, scopes: frozenset[str],
                 path: Path, digest: str, size: int, chunk_size: int, counter: Counter,
                 progress: Progress | None = None, streamed: bool = False) -> None:
        self.client = client
        self.repo = repo
        self.scopes = scopes
        self.path = path
        self.digest = digest
        self.size = size
        self.chunk_size = chunk_size
        self.counter = counter
        self.progress = progress
        self.result = UploadResult()
        self._failures = 0
        self._digest_checked = False
        self._whole = streamed  # the next PATCH carries the rest of the blob

    def run(self, location: str | None = None) -> UploadResult:
        if self.size <= self.chunk_size:
            self._monolithic(location)
        else:
            self._chunked(location)
        return self.result

    # -- failure accounting --------------------------------------------------------

    def _failed(self, what: str, resp: requests.Response | None,
                exc: BaseException | None = None) -> None:
        """Count a failure; wait (honouring Retry-After), or give up after too many.
        The upload resumes itself, so it keeps its own count and uses the policy's
        primitives (see `net.retry`) rather than `net.http.request`."""
        policy = self.client.policy
        self._failures += 1
        if resp is not None and not policy.retryable_status(resp.status_code):
            raise RegistryError(f"{what} {self.repo}@{self.digest[:19]}: {error_detail(resp)}",
                                status=resp.status_code)
        if self._failures >= policy.attempts:
            cause = error_detail(resp) if resp is not None else reason(exc) if exc else "no answer"
            raise RegistryError(f"{what} {self.repo}@{self.digest[:19]} failed "
                                f"{self._failures} times (last: {cause})",
                                status=resp.status_code if resp is not None else None)
        after = policy.retry_after(resp.headers) if resp is not None else None
        if resp is not None:
            resp.close()
        policy.wait(self._failures, after)

    def _send(self, method: str, url: str, start: int, length: int,
              headers: dict[str, str]) -> requests.Response:
        """One request carrying bytes start..start+length of the blob file."""
        base = start

        def sent(n: int) -> None:
            nonlocal base
            self.counter.add(n)
            base += n
            if self.progress:
                self.progress(base)

        return self.client.send_file(method, url, scopes=self.scopes, headers=headers,
                                     body=self._body(start, length), file=self.path,
                                     start=start, length=length, sent=sent)

    def _body(self, start: int, length: int) -> Callable[[], object]:
        if length == 0:
            return lambda: b""
        return lambda: FileRange(self.path, start, length, self.counter, self.progress)

    def _bad_digest(self) -> None:
        """The registry says the bytes don't hash to the digest: whose fault is it?"""
        ok, got = hash_file_matches(self.path, self.digest)
        if not ok:
            raise StoreCorruptError(f"blob {self.digest} is corrupt on disk (content hashes "
                                    f"to {got}); run `ociforge store fsck`")
        if self._digest_checked:
            raise RegistryError(f"{self.client.registry} computed a different digest for "
                                f"{self.digest} twice; giving up")
        self._digest_checked = True

    # -- one request ---------------------------------------------------------------

    def _monolithic(self, location: str | None) -> None:
        while True:
            loc = location or self.client.start_upload(self.repo, self.scopes)
            location = None
            resp = None
            try:
                resp = self._send("PUT", add_query(loc, digest=self.digest), 0, self.size,
                                  {"Content-Type": "application/octet-stream"})
            except NETWORK_ERRORS as e:
                if self._exists():
                    return
                self._failed("upload", None, e)
                self.result.restarted += 1
                continue
            if resp.status_code in (201, 204):
                resp.close()
                return
            if resp.status_code == 400 and "DIGEST_INVALID" in error_codes(resp):
                resp.close()
                self._bad_digest()
                self.result.restarted += 1
                continue
            self._failed("upload", resp)
            self.result.restarted += 1

    # -- chunks --------------------------------------------------------------------

    def _chunked(self, location: str | None) -> None:
        loc = location or self.client.start_upload(self.repo, self.scopes)
        offset = 0
        while True:
            while offset < self.size:
                n = self.size - offset if self._whole else min(self.chunk_size,
                                                                self.size - offset)
                resp = None
                exc: BaseException | None = None
                try:
                    resp = self._send("PATCH", loc, offset, n, {
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{offset}-{offset + n - 1}"})
                except NETWORK_ERRORS as e:
                    exc = e
                if resp is not None and resp.status_code == 202:
                    loc = self.client.absolute(resp.headers.get("Location") or loc)
                    offset = _range_end(resp.headers.get("Range"), offset + n)
                    resp.close()
                    self._failures = 0  # progress: the retry budget is per chunk
                    continue
                self._whole = False  # it broke off: chunks from here on
                if resp is not None and resp.status_code in (404, 416):
                    resp.close()  # upload gone, or out of step: ask where it stands
                else:
                    self._failed("upload", resp, exc)
                loc, offset = self._where(loc)
            if self._finish(loc):
                return
            # Intact upload: only the final PUT is repeated; lost: it starts over.
            loc, offset = self._where(loc)

    def _finish(self, loc: str) -> bool:
        """The final PUT. True when the blob is in the registry."""
        resp = None
        exc: BaseException | None = None
        try:
            resp = self.client.send("PUT", add_query(loc, digest=self.digest),
                                    scopes=self.scopes, body=self._body(0, 0))
        except NETWORK_ERRORS as e:
            exc = e
        if resp is not None and resp.status_code in (201, 204):
            resp.close()
            return True
        if resp is not None and resp.status_code == 400 \
                and "DIGEST_INVALID" in error_codes(resp):
            resp.close()
            self._bad_digest()
            return False
        if self._exists():  # the PUT landed; only its answer was lost
            if resp is not None:
                resp.close()
            return True
        if resp is not None and resp.status_code == 404:
            resp.close()
            return False
        self._failed("finishing upload", resp, exc)
        return False

    def _where(self, loc: str) -> tuple[str, int]:
        """Ask the registry how much of the upload it holds; a new upload if none."""
        resp = self.client.call("GET", loc, scopes=self.scopes)
        if resp.status_code == 204:
            new_loc = self.client.absolute(resp.headers.get("Location") or loc)
            resp.close()
            offset = _range_end(resp.headers.get("Range"), 0)
            self.result.resumed += 1
            return new_loc, offset
        resp.close()
        self.result.restarted += 1
        if self.result.restarted > self.client.policy.attempts:
            raise RegistryError(f"{self.client.registry} lost the upload of "
                                f"{self.repo}@{self.digest[:19]} {self.result.restarted} times")
        return self.client.start_upload(self.repo, self.scopes), 0

    def _exists(self) -> bool:
        try:
            return self.client.head_blob(self.repo, self.digest, self.scopes) == self.size
        except RegistryError:
            return False


def _range_end(header: str | None, default: int) -> int:
    """`Range: 0-1023` → 1024 bytes held. Distribution says `0-0` for an empty upload."""
    if not header or "-" not in header:
        return default
    start, _, end = header.removeprefix("bytes=").partition("-")
    try:
        first, last = int(start), int(end)
    except ValueError:
        return default
    return 0 if (first, last) == (0, 0) and default == 0 else last + 1
