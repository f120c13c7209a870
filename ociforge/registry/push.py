"""Pushing images from the store: blobs in parallel, each manifest after its blobs.

A multi-platform image (a name tagged with an index) is one graph: every platform's
blobs (a layer shared by the platforms goes once), each platform's manifest by
digest, then the index under the tags; its SBOMs are attached per platform manifest.

Per blob: HEAD (skip if present), else mount from a repository of the same registry
known to hold it, else upload. Per image: HEAD each tag first; when every tag already
names this digest nothing else is sent, which makes a re-push a few HEAD requests.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..image import entry_platform
from ..oci import document_kind
from ..store import Descriptor, Store
from . import RegistryError
from .client import RegistryClient, pull_scope, push_scope
from .locations import BlobLocations
from .reference import Reference
from .referrers import Artifact, Referrers
from .tree import ImageTree, walk
from .upload import BlobUpload, Counter

DEFAULT_CHUNK = 64 << 20
Progress = Callable[[str, int, int], None]  # (what, done, total)
# What to attach to a pushed image (its SBOM): an artifact, or why there is none.
ArtifactFor = Callable[["PushRequest"], "Artifact | str"]


@dataclass
class PushRequest:
    """Push the store image `name` to `target` (registry/repository) under `tags`."""

    name: str
    manifest: Descriptor
    target: Reference
    tags: list[str]
    # Set on the request an artifact is asked for, when `manifest` is one platform's
    # manifest of a multi-platform image (an SBOM is attached per platform).
    platform: str | None = None


@dataclass
class PushReport:
    images: list[dict[str, Any]] = field(default_factory=list)
    blobs: dict[str, int] = field(default_factory=lambda: {"pushed": 0, "present": 0,
                                                           "mounted": 0})
    bytes_sent: int = 0
    bytes_uploaded: int = 0  # sizes of the blobs that had to be uploaded
    resumed: int = 0
    restarted: int = 0
    retries: int = 0
    requests: int = 0
    seconds: float = 0.0
    # One entry per image when artifacts are attached: what was attached, or why not.
    attached: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "blobs": self.blobs, "bytes_sent": self.bytes_sent,
                "bytes_uploaded": self.bytes_uploaded, "resumed": self.resumed,
                "restarted": self.restarted, "retries": self.retries,
                "requests": self.requests, "seconds": round(self.seconds, 3),
                "attached": self.attached}


class Pusher:
    def __init__(self, store: Store, client_for: Callable[[Reference], RegistryClient], *,
                 jobs: int = 4, chunk_size: int | None = None,
                 progress: Progress | None = None,
                 artifact_for: ArtifactFor | None = None, artifact_jobs: int = 1) -> None:
        self.store = store
        self.artifact_for = artifact_for
        self.artifact_jobs = artifact_jobs
        self.client_for = client_for
        self.jobs = jobs
        # None: a large blob goes as one streamed request, DEFAULT_CHUNK pieces after a
        # drop; a size: chunks of that size from the start (many small requests).
        self.streamed = chunk_size is None
        self.chunk_size = chunk_size or DEFAULT_CHUNK
        self.progress = progress or (lambda what, done, total: None)
        self.counter = Counter()
        self.locations = BlobLocations(store)
        self._stats_lock = threading.Lock()
        self._uploads: list[BlobUpload] = []

    def push(self, requests: list[PushRequest]) -> PushReport:
        started = time.monotonic()
        report = PushReport()
        trees = {r.name: walk(self.store, r.manifest) for r in requests}
        for tree in trees.values():
            for blob in tree.blobs:
                self.store.check_available(blob.digest, blob.size)
        scopes = self._scopes(requests, trees)
        clients: list[RegistryClient] = []
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="push")
        # A thread per image (up to 16; blob transfers keep to `jobs`): an image's
        # manifests and SBOM are a chain of small requests, and a fifth image waiting
        # for the first four adds its whole chain to the push's time.
        images = ThreadPoolExecutor(max_workers=max(self.jobs, min(len(requests), 16)),
                                    thread_name_prefix="push-image")
        # Each artifact (an SBOM per platform manifest) is made while the blobs go up, on
        # threads of their own (`artifact_jobs`: as many as `artifact_for` can make at
        # once): uploads mostly wait on the registry, so it costs no wall time.
        side = ThreadPoolExecutor(max_workers=self.artifact_jobs, thread_name_prefix="artifact")
        artifacts: dict[tuple[str, str], Future[Artifact | str]] = {}
        if self.artifact_for is not None:
            for r in requests:
                for sub, subject in subjects(r, trees[r.name]):
                    artifacts[(r.name, subject.digest)] = side.submit(self.artifact_for, sub)
        try:
            pending: dict[tuple[str, str, str], Future[str]] = {}
            accounted: set[tuple[str, str, str]] = set()
            plans = []
            # Every image's manifest HEADs at once, then its blobs into the pool, then
            # each image's manifests and artifact at once: a stitching push is mostly
            # small requests, so their round trips overlap.
            tagless = self._tagless(requests, scopes)
            states = list(images.map(lambda r: self._manifest_state(
                self.client_for(r.target), r, trees[r.name],
                scopes[(r.target.registry, r.target.repository)], tagless), requests))
            for req, (state, missing) in zip(requests, states, strict=True):
                client = self.client_for(req.target)
                if client not in clients:
                    clients.append(client)
                tree = trees[req.name]
                repo_scopes = scopes[(req.target.registry, req.target.repository)]
                futures = []
                # Largest first: the registry's hashing of the biggest blob is the
                # push's critical path, so it starts at once.
                for blob in sorted(tree.blobs, key=lambda b: -b.size):
                    key = (req.target.registry, req.target.repository, blob.digest)
                    if state == "new":
                        futures.append((key, self._schedule(pool, pending, client,
                                                            req.target, blob, repo_scopes)))
                    elif key not in accounted and key not in pending:
                        accounted.add(key)  # known present: the manifest is there
                        report.blobs["present"] += 1
                        self.progress(self._label(req.target, blob), blob.size, blob.size)
                plans.append((req, tree, state, missing, futures, client, repo_scopes))
            finished = [images.submit(self._finish, *plan, artifacts) for plan in plans]
            for (req, tree, state, _m, futures, _c, _s), done in zip(plans, finished,
                                                                     strict=True):
                attached = done.result()
                for key, fut in futures:
                    outcome = fut.result()
                    if key not in accounted:  # a layer shared by two images counts once
                        accounted.add(key)
                        report.blobs[outcome] += 1
                report.images.append({
                    "name": req.name, "repository": f"{req.target.registry}/"
                    f"{req.target.repository}", "tags": req.tags, "digest": tree.root.digest,
                    "manifest": {"new": "pushed", "tagged": "tagged"}.get(state, "present"),
                    **_platforms(req, tree)})
                report.attached += attached
        except BaseException:
            self.counter.abort.set()
            images.shutdown(wait=True, cancel_futures=True)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            side.shutdown(wait=True, cancel_futures=True)
            self.locations.save()
        images.shutdown(wait=True)
        pool.shutdown(wait=True)
        report.bytes_sent = self.counter.value
        report.bytes_uploaded = sum(u.size for u in self._uploads)
        report.resumed = sum(u.result.resumed for u in self._uploads)
        report.restarted = sum(u.result.restarted for u in self._uploads)
        report.retries = sum(p.retries for p in {id(c.policy): c.policy for c in clients}.values())
        report.requests = sum(c.requests_made for c in clients)
        report.seconds = time.monotonic() - started
        return report

    def _finish(self, req: PushRequest, tree: ImageTree, state: str, missing: list[str],
                futures: list[tuple[tuple[str, str, str], Future[str]]],
                client: RegistryClient, scopes: frozenset[str],
                artifacts: dict[tuple[str, str], Future[Artifact | str]]) -> list[dict[str, Any]]:
        """One image once its blobs are in: its manifests, then its artifacts (one per
        platform manifest)."""
        for _key, fut in futures:
            fut.result()
        if missing:
            self._put_manifests(client, req, tree, missing, scopes, children=state == "new")
        return [self._attach(client, sub, subject, scopes,
                             artifacts[(req.name, subject.digest)].result(), state == "new")
                for sub, subject in subjects(req, tree) if (req.name, subject.digest) in artifacts]

    # -- planning ------------------------------------------------------------------

    def _scopes(self, requests: list[PushRequest], trees: dict[str, ImageTree]
                ) -> dict[tuple[str, str], frozenset[str]]:
        """One scope set per target repository, asked for up front so that one token
        serves every request: push on the target, pull on each mount source."""
        repos_by_registry: dict[str, set[str]] = {}
        for r in requests:
            repos_by_registry.setdefault(r.target.registry, set()).add(r.target.repository)
        out = {}
        for r in requests:
            key = (r.target.registry, r.target.repository)
            if key in out:
                continue
            sources = set(repos_by_registry[r.target.registry])
            for blob in trees[r.name].blobs:
                sources.update(self.locations.sources(r.target.registry, blob.digest, ""))
            sources.discard(r.target.repository)
            out[key] = frozenset({push_scope(r.target.repository),
                                  *(pull_scope(s) for s in sorted(sources))})
        return out

    def _tagless(self, requests: list[PushRequest], scopes: dict[tuple[str, str], frozenset[str]]
                 ) -> set[tuple[str, str]]:
        """The target repositories that have no tag yet (a new repository, as when CI
        publishes to a fresh one): one request each, instead of two HEADs per image."""
        out = set()
        for key in dict.fromkeys((r.target.registry, r.target.repository) for r in requests):
            req = next(r for r in requests if (r.target.registry, r.target.repository) == key)
            if self.client_for(req.target).has_tags(key[1], scopes[key]) is False:
                out.add(key)
        return out

    def _manifest_state(self, client: RegistryClient, req: PushRequest, tree: ImageTree,
                        scopes: frozenset[str], tagless: set[tuple[str, str]]
                        ) -> tuple[str, list[str]]:
        """("present", []) when every tag names our digest; ("tagged", tags) when the
        manifest is there but some tags are not; ("new", tags) otherwise, and at once
        in a repository with no tag (an untagged copy of the manifest there would only
        mean blobs found present and the same manifest put again)."""
        if (req.target.registry, req.target.repository) in tagless:
            return "new", list(req.tags)
        repo = req.target.repository
        digest = tree.root.digest
        missing = []
        for tag in req.tags:
            head = client.head_manifest(repo, tag, scopes)
            if head is None or head[0] != digest:
                missing.append(tag)
        if not missing:
            return "present", []
        if len(missing) < len(req.tags) or client.head_manifest(repo, digest, scopes):
            return "tagged", missing
        return "new", missing

    @staticmethod
    def _label(target: Reference, blob: Descriptor) -> str:
        return f"{target.repository.rsplit('/', 1)[-1][:14]}@{blob.digest[7:19]}"

    def _schedule(self, pool: ThreadPoolExecutor,
                  pending: dict[tuple[str, str, str], Future[str]], client: RegistryClient,
                  target: Reference, blob: Descriptor, scopes: frozenset[str]) -> Future[str]:
        key = (target.registry, target.repository, blob.digest)
        if key in pending:
            return pending[key]
        # The same blob going to another repository of this registry in this push:
        # wait for it there, then mount it. Submission order is FIFO, so the awaited
        # task is already running when this one starts: no deadlock.
        earlier = next((f for (reg, _repo, d), f in pending.items()
                        if reg == target.registry and d == blob.digest), None)
        fut = pool.submit(self._blob, client, target, blob, scopes, earlier)
        pending[key] = fut
        return fut

    # -- work ----------------------------------------------------------------------

    def _blob(self, client: RegistryClient, target: Reference, blob: Descriptor,
              scopes: frozenset[str], earlier: Future[str] | None) -> str:
        if earlier is not None:
            earlier.result()
        repo, label = target.repository, self._label(target, blob)
        self.progress(label, 0, blob.size)
        mounted, location = False, None
        remote = not self.store.has_blob(blob.digest, blob.size)
        if remote:
            # Its bytes are in the layer cache, not here: the mount is tried first, with
            # no HEAD before it (the registry answers 201 whether it mounts the blob or
            # the repository has it already). A HEAD only when the mount fails.
            mounted, location = self._mount(client, target, blob, scopes)
        if mounted:
            outcome = "mounted"
        elif client.head_blob(repo, blob.digest, scopes) is not None:
            outcome = "present"
        elif remote:
            outcome = self._upload(client, target, blob, scopes, label, location)
        else:
            outcome = self._mount_or_upload(client, target, blob, scopes, label)
        self.locations.record(target.registry, blob.digest, repo)
        self.progress(label, blob.size, blob.size)
        return outcome

    def _mount(self, client: RegistryClient, target: Reference, blob: Descriptor,
               scopes: frozenset[str]) -> tuple[bool, str | None]:
        """Mount from a repository known to hold the blob: (True, None), or (False, the
        upload the registry opened instead, if any)."""
        repo = target.repository
        for source in self.locations.sources(target.registry, blob.digest, repo)[:2]:
            mounted, location = client.mount_blob(repo, blob.digest, source,
                                                  scopes | {pull_scope(source)})
            if mounted or location:
                return mounted, location
        return False, None

    def _mount_or_upload(self, client: RegistryClient, target: Reference, blob: Descriptor,
                         scopes: frozenset[str], label: str) -> str:
        mounted, location = self._mount(client, target, blob, scopes)
        if mounted:
            return "mounted"
        return self._upload(client, target, blob, scopes, label, location)

    def _upload(self, client: RegistryClient, target: Reference, blob: Descriptor,
                scopes: frozenset[str], label: str, location: str | None) -> str:
        repo = target.repository
        # Not mountable: the bytes are needed (a blob left in the layer cache comes now).
        upload = BlobUpload(client, repo, scopes, self.store.require_blob(blob.digest),
                            blob.digest, blob.size, self.chunk_size, self.counter,
                            progress=lambda done: self.progress(label, done, blob.size),
                            streamed=self.streamed)
        with self._stats_lock:
            self._uploads.append(upload)
        upload.run(location)
        return "pushed"

    def _attach(self, client: RegistryClient, req: PushRequest, subject: Descriptor,
                scopes: frozenset[str], art: Artifact | str, new_subject: bool
                ) -> dict[str, Any]:
        """Attach the artifact of `subject` (after its manifest is in place;
        `new_subject`: this push put it there)."""
        entry: dict[str, Any] = {"name": req.name, "subject": subject.digest,
                                 **({"platform": req.platform} if req.platform else {})}
        if isinstance(art, str):
            return {**entry, "skipped": art}
        self.progress(f"attach {req.name}", 0, len(art.data))
        try:
            done = Referrers(client, req.target.repository, scopes, self.store.tmp_dir,
                             self.locations).attach(subject, art, new_subject=new_subject)
        except RegistryError as e:
            raise RegistryError(f"{req.name} was pushed, but attaching its {art.artifact_type} "
                                f"failed: {e}") from None
        self.progress(f"attach {req.name}", len(art.data), len(art.data))
        return {**entry, "artifactType": art.artifact_type, **done.to_json()}

    def _put_manifests(self, client: RegistryClient, req: PushRequest, tree: ImageTree,
                       tags: list[str], scopes: frozenset[str], children: bool) -> None:
        repo = req.target.repository
        if children:
            for desc, data in tree.manifests[:-1]:
                client.put_manifest(repo, desc.digest, data, desc.media_type, desc.digest,
                                    scopes)
        root, data = tree.manifests[-1]
        for tag in tags:
            client.put_manifest(repo, tag, data, req.manifest.media_type or root.media_type,
                                root.digest, scopes)


def _platforms(req: PushRequest, tree: ImageTree) -> dict[str, Any]:
    """{"platforms": {platform: manifest digest}} for a multi-platform image, else {}."""
    subs = subjects(req, tree)
    if len(subs) == 1 and subs[0][0] is req:
        return {}
    return {"platforms": {sub.platform: subject.digest for sub, subject in subs}}


def subjects(req: PushRequest, tree: ImageTree) -> list[tuple[PushRequest, Descriptor]]:
    """What artifacts are attached to, each with the request to make its artifact
    from: the image's manifest; for a multi-platform image, each platform's manifest
    (where runtimes and scanners look: they resolve the index to one platform first),
    not the index."""
    root, data = tree.manifests[-1]
    tagged = Descriptor(req.manifest.media_type or root.media_type, root.digest,
                        req.manifest.size)
    doc = json.loads(data)
    if document_kind(tagged.media_type, doc) != "index":
        return [(req, tagged)]
    out = []
    for entry in doc.get("manifests", []):
        child = Descriptor.from_json(entry)
        out.append((dataclasses.replace(req, manifest=child,
                                        platform=entry_platform(entry) or "unknown"), child))
    return out
