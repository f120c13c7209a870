"""Pulling an image from a registry into the store, every byte checked on the way.

The manifest's digest must match the reference (when pinned) and the registry's
`Docker-Content-Digest`; each blob is written through the store's hashing writer and
only committed if it hashes to its descriptor. An index is resolved to one platform.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..digests import digest_bytes
from ..errors import IntegrityError, NetworkError, OciforgeError, StoreCorruptError
from ..image import default_reference, host_platform
from ..net.http import retrying
from ..oci import Descriptor, document_kind
from ..store import Store
from . import RegistryError
from .client import RegistryClient
from .reference import Reference

Progress = Callable[[str, int, int], None]
READ_BLOCK = 1 << 20


@dataclass
class PullReport:
    name: str
    reference: str
    digest: str
    media_type: str
    platform: str | None
    fetched: int = 0
    present: int = 0
    bytes_fetched: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "reference": self.reference, "digest": self.digest,
                "mediaType": self.media_type, "platform": self.platform,
                "blobs": {"fetched": self.fetched, "present": self.present},
                "bytes_fetched": self.bytes_fetched, "seconds": round(self.seconds, 3)}


def _platform_matches(entry: dict[str, Any], platform: str) -> bool:
    want = platform.split("/")
    p = entry.get("platform") or {}
    have = [p.get("os", ""), p.get("architecture", ""), p.get("variant", "")]
    return have[:len(want)] == want or (len(want) == 2 and have[:2] == want)


class Puller:
    def __init__(self, store: Store, client: RegistryClient, *, jobs: int = 4,
                 progress: Progress | None = None) -> None:
        self.store = store
        self.client = client
        self.jobs = jobs
        self.progress = progress or (lambda what, done, total: None)

    def _manifest(self, repo: str, ref: str, expect: str | None) -> tuple[bytes, str, str]:
        data, media_type, header = self.client.get_manifest(repo, ref)
        digest = digest_bytes(data)
        if expect and digest != expect:
            raise IntegrityError(f"manifest {repo}@{expect} from {self.client.registry} "
                                 f"hashes to {digest}")
        if header and header.startswith("sha256:") and header != digest:
            raise IntegrityError(f"manifest {repo}:{ref} hashes to {digest} but the registry "
                                 f"says {header}")
        return data, media_type, digest

    def pull(self, ref: Reference, name: str, platform: str | None = None) -> PullReport:
        """Pull `ref` as `name`; of an index, the image of `platform` (the host's)."""
        platform = platform or host_platform()
        started = time.monotonic()
        repo = ref.repository
        data, media_type, digest = self._manifest(repo, ref.reference, ref.digest)
        chosen = None
        if document_kind(media_type, json.loads(data)) == "index":
            entries = json.loads(data).get("manifests", [])
            match = next((e for e in entries if _platform_matches(e, platform)), None)
            if match is None:
                have = sorted({"/".join(filter(None, [e.get("platform", {}).get("os"),
                                                      e.get("platform", {}).get("architecture")]))
                               for e in entries})
                raise OciforgeError(f"{ref} has no {platform} image (it has: "
                                    f"{', '.join(have) or 'none'}); use --platform")
            chosen = platform
            data, media_type, digest = self._manifest(repo, match["digest"], match["digest"])
        doc = json.loads(data)
        blobs = [Descriptor.from_json(d) for d in [doc["config"], *doc.get("layers", [])]]
        report = PullReport(name, str(ref), digest, media_type, chosen)
        with self.store.writer_lock():
            todo = [b for b in blobs if not self.store.has_blob(b.digest, b.size)]
            report.present = len(blobs) - len(todo)
            with ThreadPoolExecutor(max_workers=self.jobs) as pool:
                for n in pool.map(lambda b: self._fetch(repo, b), todo):
                    report.bytes_fetched += n
            report.fetched = len(todo)
            self.store.put_bytes(data)
            self.store.tag(name, Descriptor(media_type, digest, len(data)),
                           {"io.ociforge.reference": default_reference(name),
                            "io.ociforge.source": str(ref.with_tag(ref.tag or "latest")
                                                      if not ref.digest else ref)})
        report.seconds = time.monotonic() - started
        return report

    def fetch_blob(self, repo: str, blob: Descriptor) -> int:
        """One blob of `repo` into the store, verified; the bytes received."""
        return self._fetch(repo, blob)

    def _fetch(self, repo: str, blob: Descriptor) -> int:
        """Download one blob into the store, resuming with a Range request after a drop
        (each attempt asks for what the writer lacks; `retrying` decides when to stop)."""
        label = blob.digest[7:19]
        writer = self.store.new_blob()
        fetched = 0

        def attempt() -> None:
            nonlocal writer, fetched
            with self.client.get_blob(repo, blob.digest, offset=writer.size) as resp:
                if writer.size and resp.status_code != 206:
                    writer.abort()  # the registry ignored Range: start over
                    writer = self.store.new_blob()
                for chunk in resp.iter_content(READ_BLOCK):
                    writer.write(chunk)
                    fetched += len(chunk)
                    if writer.size > blob.size:
                        raise IntegrityError(f"blob {blob.digest} is larger than "
                                             f"its descriptor says ({blob.size})")
                    self.progress(label, writer.size, blob.size)
            if writer.size != blob.size:
                raise ConnectionError("Connection broken: the blob body ended early")

        try:
            try:
                retrying(self.client.policy, attempt, method="GET",
                         url=self.client.url(f"/v2/{repo}/blobs/{blob.digest}"))
            except NetworkError as e:
                raise RegistryError(f"downloading {repo}@{blob.digest[:19]} failed "
                                    f"{e.attempts} times ({e.reason})") from None
            try:
                writer.commit(expected=blob.digest)
            except StoreCorruptError as e:
                raise IntegrityError(f"blob from {self.client.registry}/{repo}: {e}") from None
        except BaseException:
            writer.abort()
            raise
        return fetched
