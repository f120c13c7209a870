"""Attaching an artifact (the image's SBOM) to a pushed image, OCI distribution 1.1.

The artifact is an image manifest with `artifactType`, the empty config (`{}`), one
layer (the document) and `subject` = the image manifest's descriptor. A registry
with the referrers API answers the manifest PUT with `OCI-Subject` and lists the
artifact itself. One without it (distribution 2.x, Debian's docker-registry) gets the
spec's fallback: an image index tagged `sha256-<hex of the subject digest>` listing
the subject's referrers, which the client maintains: fetch, add the entry unless it
is there, push. The artifact is deterministic, so a re-push finds its own entry and
changes nothing. Two clients updating the same fallback tag at once can lose one
entry (the spec accepts this; the registry offers no compare-and-swap).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..digests import canonical_json, digest_bytes
from ..store import MT_DOCKER_LIST, MT_INDEX, MT_MANIFEST, Descriptor
from . import RegistryError
from .client import RegistryClient, error_detail, pull_scope
from .locations import BlobLocations
from .upload import BlobUpload, Counter

MT_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
TITLE = "org.opencontainers.image.title"


@dataclass(frozen=True)
class Artifact:
    """What to attach: one document of `media_type`, typed as `artifact_type`."""

    artifact_type: str
    media_type: str
    data: bytes
    title: str  # file name a client such as `oras pull` saves it as
    annotations: tuple[tuple[str, str], ...] = ()


@dataclass
class Attached:
    digest: str  # the artifact manifest's
    size: int
    blob: str  # the document's digest
    state: str  # "pushed" or "present"
    via: str  # "referrers-api" or "tag-fallback"
    tag: str | None
    bytes_sent: int

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "size": self.size, "blob": self.blob,
                "state": self.state, "referrers": self.via, "tag": self.tag,
                "bytes_sent": self.bytes_sent}


def fallback_tag(digest: str) -> str:
    """The referrers tag schema: `<alg>-<ref>`, at most 128 characters."""
    alg, _, hex_ = digest.partition(":")
    return f"{alg}-{hex_}"[:128]


def artifact_manifest(subject: Descriptor, art: Artifact) -> bytes:
    empty = {"mediaType": MT_EMPTY, "digest": digest_bytes(EMPTY), "size": len(EMPTY),
             "data": base64.b64encode(EMPTY).decode()}
    layer = {"mediaType": art.media_type, "digest": digest_bytes(art.data),
             "size": len(art.data), "annotations": {TITLE: art.title}}
    manifest: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": MT_MANIFEST, "artifactType": art.artifact_type,
        "config": empty, "layers": [layer], "subject": subject.to_json(),
    }
    if art.annotations:
        manifest["annotations"] = dict(sorted(art.annotations))
    return canonical_json(manifest)


_locks: dict[tuple[str, str, str], threading.Lock] = {}
_locks_lock = threading.Lock()


def _blob_lock(registry: str, repo: str, digest: str) -> threading.Lock:
    with _locks_lock:
        return _locks.setdefault((registry, repo, digest), threading.Lock())


class Referrers:
    """Attaches artifacts to manifests of one repository."""

    def __init__(self, client: RegistryClient, repo: str, scopes: frozenset[str],
                 tmp_dir: Path, locations: BlobLocations | None = None) -> None:
        self.client = client
        self.repo = repo
        self.scopes = scopes
        self.tmp_dir = tmp_dir
        self.locations = locations

    def attach(self, subject: Descriptor, art: Artifact, *, new_subject: bool = False
               ) -> Attached:
        """`new_subject`: the subject's manifest was just pushed (it was not there), so
        no artifact of it can be either: the artifact goes without a HEAD first (a PUT
        of a manifest that is there after all is harmless: same bytes, same digest)."""
        data = artifact_manifest(subject, art)
        digest = digest_bytes(data)
        counter = Counter()
        out = Attached(digest, len(data), digest_bytes(art.data), "present", "tag-fallback",
                       None, 0)
        if new_subject or self.client.head_manifest(self.repo, digest, self.scopes) is None:
            self._blob(EMPTY, counter)
            self._blob(art.data, counter)
            headers = self.client.put_manifest(self.repo, digest, data, MT_MANIFEST, digest,
                                               self.scopes)
            out.state = "pushed"
            if headers.get("oci-subject") == subject.digest:
                out.via = "referrers-api"
        if out.via == "tag-fallback":
            # No OCI-Subject, or the artifact was there already. The tag is looked at
            # before the API, so a re-push to a registry without it makes no failing
            # request.
            tag = fallback_tag(subject.digest)
            index = self._tag_index(tag)
            manifests = [m for m in index.get("manifests", []) if isinstance(m, dict)]
            if any(m.get("digest") == digest for m in manifests):
                out.tag = tag
            elif out.state == "present" and self._listed_by_api(subject.digest, digest):
                out.via = "referrers-api"
            else:
                entry = {"mediaType": MT_MANIFEST, "digest": digest, "size": len(data),
                         "artifactType": art.artifact_type}
                if art.annotations:
                    entry["annotations"] = dict(sorted(art.annotations))
                index["manifests"] = [*manifests, entry]
                body = canonical_json(index)
                self.client.put_manifest(self.repo, tag, body, MT_INDEX, digest_bytes(body),
                                         self.scopes)
                out.tag = tag
        out.bytes_sent = counter.value
        return out

    # -- pieces --------------------------------------------------------------------

    def _blob(self, data: bytes, counter: Counter) -> None:
        digest = digest_bytes(data)
        # One thread at a time per blob and repository: the empty config of every
        # image's SBOM goes up once, the others find it placed.
        with _blob_lock(self.client.registry, self.repo, digest):
            self._blob_once(data, digest, counter)

    def _blob_once(self, data: bytes, digest: str, counter: Counter) -> None:
        placed = self.locations is not None and self.locations.placed(
            self.client.registry, digest, self.repo)  # (the empty config, after the first)
        if not placed and self.client.head_blob(self.repo, digest, self.scopes) is None:
            mounted, location = self._mount(digest)
            if not mounted:
                # BlobUpload streams from a file (with its retry and digest checks); the
                # pid prefix marks the file as live for `store gc`.
                path = self.tmp_dir / f"{os.getpid()}-artifact-{secrets.token_hex(6)}.part"
                path.write_bytes(data)
                try:
                    BlobUpload(self.client, self.repo, self.scopes, path, digest, len(data),
                               max(len(data), 1), counter).run(location)
                finally:
                    path.unlink(missing_ok=True)
        if self.locations is not None:
            self.locations.record(self.client.registry, digest, self.repo)

    def _mount(self, digest: str) -> tuple[bool, str | None]:
        """Mount from another repository known to hold the blob, as image blobs are:
        (True, None), or (False, an upload the registry opened instead, if any)."""
        if self.locations is None:
            return False, None
        for source in self.locations.sources(self.client.registry, digest, self.repo)[:2]:
            mounted, location = self.client.mount_blob(self.repo, digest, source,
                                                       self.scopes | {pull_scope(source)})
            if mounted or location:
                return mounted, location
        return False, None

    def _listed_by_api(self, subject: str, digest: str) -> bool:
        """Whether the registry's referrers API lists `digest` (False without the API:
        a 404, or an answer that is not an index)."""
        resp = self.client.call("GET", f"/v2/{self.repo}/referrers/{subject}",
                                scopes=self.scopes, headers={"Accept": MT_INDEX})
        with resp:
            if resp.status_code != 200:
                return False
            try:
                index = resp.json()
            except ValueError:
                return False
        return isinstance(index, dict) and any(
            isinstance(m, dict) and m.get("digest") == digest for m in index.get("manifests", []))

    def _tag_index(self, tag: str) -> dict[str, Any]:
        resp = self.client.call("GET", f"/v2/{self.repo}/manifests/{tag}", scopes=self.scopes,
                                headers={"Accept": f"{MT_INDEX}, {MT_DOCKER_LIST}"})
        with resp:
            if resp.status_code == 404:
                return {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
            if resp.status_code != 200:
                raise RegistryError(f"GET {self.repo}:{tag} (referrers tag): "
                                    f"{error_detail(resp)}")
            try:
                index = json.loads(resp.content)
            except ValueError:
                index = None
        if not isinstance(index, dict) or index.get("mediaType", MT_INDEX) != MT_INDEX:
            raise RegistryError(f"{self.client.registry}/{self.repo}:{tag} is not an image "
                                "index, so it cannot be the referrers tag; leaving it alone")
        return index
