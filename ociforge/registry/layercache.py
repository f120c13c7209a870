"""A layer cache in any OCI registry: the repository CI pushes images to is also
where every runner finds the layers another runner built.

One entry per input key: the tag `layer-<key hex>` names a small OCI 1.1 artifact
manifest whose config is the layer record (its own media type) and whose layers are
the layer's blob(s), plus the SBOM scan of the layer's tar when an SBOM needs one
(so an SBOM is written without the layer's bytes). An entry is deterministic (the
record's build time is not in it), so two runners that built the same key write the
same manifest: concurrent writers are harmless.

On a hit the record is taken and its blobs are only *noted* as remote in the store
(`Store.note_remote`); `CacheBlobs` fetches one the first time its bytes are read
(archive, layout, checks), verifying its digest. A push to the same registry mounts
them from the cache repository instead (BlobLocations). What is verified on read:
the config's digest, that the record is the key's, that the manifest lists every
blob the record names with the same size, and that the registry holds each blob at
that size; the bytes are verified when fetched. An entry that fails is ignored with
a warning naming the key, and the layer is built again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import threading
from collections.abc import Callable
from typing import Any

from ..digests import canonical_json, digest_bytes, digest_hex
from ..errors import IntegrityError, OciforgeError
from ..image import StoredLayer
from ..records import LayerRecord
from ..sbom.collect import scan_want
from ..sbom.layerscan import SCAN_VERSION, scan_layer, scan_path
from ..store import MT_MANIFEST, Descriptor, Store, atomic_write
from .client import RegistryClient, error_detail, pull_scope, push_scope
from .locations import BlobLocations
from .pull import Puller
from .reference import parse
from .upload import BlobUpload, Counter

MT_RECORD = "application/vnd.ociforge.layer-record.v1+json"
MT_SCAN = "application/vnd.ociforge.layer-scan.v1+json"
ARTIFACT_TYPE = "application/vnd.ociforge.layer.v1"
ACCEPT = MT_MANIFEST
Warn = Callable[[str], None]
# (input key, blob digest) -> whether the layer was built again to make that blob.
Rebuild = Callable[[str, str], bool]


def cache_tag(key: str) -> str:
    """The tag of `key`'s entry (70 characters; tags may have 128)."""
    return f"layer-{digest_hex(key)}"


def cache_record(rec: LayerRecord) -> LayerRecord:
    """The record as the cache keeps it: without when and how long it was built, so
    every runner that builds the key writes the same entry."""
    return dataclasses.replace(rec, built_at=0, build_seconds=0.0)


class BadEntry(OciforgeError):
    """A cache entry that is not what its key says."""


class RegistryLayerCache:
    """`layers.RemoteCache` over one repository of one registry."""

    def __init__(self, client: RegistryClient, repo: str, store: Store, *, write: bool,
                 warn: Warn) -> None:
        self.client = client
        self.repo = repo
        self.store = store
        self.write = write
        self.warn = warn
        self.scopes = frozenset({push_scope(repo) if write else pull_scope(repo)})
        self.locations = BlobLocations(store)
        self.hits = 0
        self.puts = 0
        self._bad: set[str] = set()

    @property
    def where(self) -> str:
        return f"{self.client.registry}/{self.repo}"

    # -- lookup --------------------------------------------------------------------

    def lookup(self, key: str) -> LayerRecord | None:
        if key in self._bad:
            return None  # warned about once
        try:
            found = self._entry(key)
        except BadEntry as e:
            self._bad.add(key)
            self.warn(f"layer cache {self.where}: entry {cache_tag(key)} (key {key}) "
                      f"ignored: {e}; building the layer")
            return None
        except OciforgeError as e:  # unreachable, refused: build as if there were none
            self.warn(f"layer cache {self.where}: lookup of key {key} failed: {e}")
            return None
        if found is None:
            return None
        rec, scan = found
        note = {"registry": self.client.registry, "repository": self.repo, "key": key}
        for blob in rec.blobs.values():
            if not self.store.has_blob(blob.digest, blob.size):
                self.store.note_remote(blob.digest, blob.size, note)
            self.locations.record(self.client.registry, blob.digest, self.repo)
        self.locations.save()
        if scan is not None:
            want = scan_want(rec)
            if want is not None:
                path = scan_path(self.store, rec.diff_id, want)
                path.parent.mkdir(parents=True, exist_ok=True)
                # Not fsynced: a scan is checked when read (its diff_id, its version)
                # and made again if torn.
                atomic_write(path, scan, self.store.tmp_dir, durable=False)
        self.hits += 1
        return rec

    def _entry(self, key: str) -> tuple[LayerRecord, bytes | None] | None:
        resp = self.client.call("GET", f"/v2/{self.repo}/manifests/{cache_tag(key)}",
                                scopes=self.scopes, headers={"Accept": ACCEPT})
        with resp:
            if resp.status_code == 404:
                return None
            if resp.status_code != 200:
                raise OciforgeError(f"GET {cache_tag(key)}: {error_detail(resp)}")
            data = resp.content
        try:
            manifest = json.loads(data)
            config = Descriptor.from_json(manifest["config"])
            layers = [Descriptor.from_json(d) for d in manifest.get("layers", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BadEntry(f"not an ociforge layer cache manifest ({e!r:.80})") from None
        if config.media_type != MT_RECORD:
            raise BadEntry(f"its config is {config.media_type!r}, not a layer record")
        try:
            rec = LayerRecord.from_json(json.loads(self._small_blob(config)))
        except ValueError as e:
            raise BadEntry(f"its config is not a layer record ({e})") from None
        if rec.input_key != key:
            raise BadEntry(f"its record is for key {rec.input_key}")
        listed = {d.digest: d.size for d in layers}
        for compression, blob in rec.blobs.items():
            if listed.get(blob.digest) != blob.size:
                raise BadEntry(f"the record's {compression} blob {blob.digest} is not "
                               "among its layers at the recorded size")
            size = self.client.head_blob(self.repo, blob.digest, self.scopes)
            if size != blob.size:
                raise BadEntry(f"blob {blob.digest} is "
                               + ("missing" if size is None else f"{size} bytes, the record "
                                  f"says {blob.size}"))
        scan_desc = next((d for d in layers if d.media_type == MT_SCAN), None)
        scan = self._scan(scan_desc, rec) if scan_desc is not None else None
        return rec, scan

    def _scan(self, desc: Descriptor, rec: LayerRecord) -> bytes | None:
        data = self._small_blob(desc)
        try:
            scan = json.loads(data)
        except ValueError:
            raise BadEntry(f"its layer scan {desc.digest} is not JSON") from None
        if not isinstance(scan, dict) or scan.get("diff_id") != rec.diff_id:
            raise BadEntry("its layer scan is of another layer")
        return data if scan.get("v") == SCAN_VERSION else None  # older scan: scan again

    def _small_blob(self, desc: Descriptor) -> bytes:
        if desc.size > 64 << 20:
            raise BadEntry(f"blob {desc.digest} is too large for a record ({desc.size} B)")
        with self.client.get_blob(self.repo, desc.digest) as resp:
            data = resp.content
        if digest_bytes(data) != desc.digest:
            raise BadEntry(f"blob {desc.digest} does not match its digest")
        return data

    # -- put -----------------------------------------------------------------------

    def put(self, record: LayerRecord) -> None:
        """Write `record`'s entry (nothing in read mode, nothing if the key is there
        and was not found bad). A failure is a warning: the build stands, only the
        sharing is lost."""
        if not self.write:
            return
        try:
            # An entry found bad is written over (a tag pointing at another key's entry
            # is mended; a blob damaged in the registry's storage needs its admin).
            if record.input_key not in self._bad and self.client.head_manifest(
                    self.repo, cache_tag(record.input_key), self.scopes) is not None:
                return
            self._put(cache_record(record))
            self.puts += 1
        except OciforgeError as e:
            self.warn(f"layer cache {self.where}: could not store key {record.input_key} "
                      f"(layer {record.name}): {e}")

    def _put(self, rec: LayerRecord) -> None:
        layers = [rec.blobs[c] for c in sorted(rec.blobs)]
        for blob in layers:
            self._upload(blob.digest, blob.size, None)
        config = canonical_json(rec.to_json())
        self._upload(digest_bytes(config), len(config), config)
        want = scan_want(rec)
        if want is not None:
            blob = rec.blob(sorted(rec.blobs)[0])
            scan_layer(self.store, StoredLayer(blob, rec.diff_id, rec, self.store), want)
            data = scan_path(self.store, rec.diff_id, want).read_bytes()
            self._upload(digest_bytes(data), len(data), data)
            layers.append(Descriptor(MT_SCAN, digest_bytes(data), len(data)))
        manifest = canonical_json({
            "schemaVersion": 2, "mediaType": MT_MANIFEST, "artifactType": ARTIFACT_TYPE,
            "config": {"mediaType": MT_RECORD, "digest": digest_bytes(config),
                       "size": len(config)},
            "layers": [d.to_json() for d in layers],
            "annotations": {"io.ociforge.input-key": rec.input_key,
                            "io.ociforge.layer": rec.name}})
        self.client.put_manifest(self.repo, cache_tag(rec.input_key), manifest, MT_MANIFEST,
                                 digest_bytes(manifest), self.scopes)
        for blob in rec.blobs.values():
            self.locations.record(self.client.registry, blob.digest, self.repo)
        self.locations.save()

    def _upload(self, digest: str, size: int, data: bytes | None) -> None:
        if self.client.head_blob(self.repo, digest, self.scopes) is not None:
            return
        if data is None:
            path = self.store.require_blob(digest)
            BlobUpload(self.client, self.repo, self.scopes, path, digest, size,
                       64 << 20, Counter()).run()
            return
        # BlobUpload streams from a file; the pid prefix marks it live for `store gc`.
        path = self.store.tmp_dir / f"{os.getpid()}-cache-{secrets.token_hex(6)}.part"
        path.write_bytes(data)
        try:
            BlobUpload(self.client, self.repo, self.scopes, path, digest, size,
                       max(size, 1), Counter()).run()
        finally:
            path.unlink(missing_ok=True)


class CacheBlobs:
    """`store.RemoteBlobs`: fetches a blob noted as remote from the cache repository
    it was found in, the first time its bytes are needed. A blob whose bytes do not
    match its digest is a bad cache entry: with `rebuild` set (a build session that
    knows the key), the layer is built again to make it; otherwise the error stands."""

    def __init__(self, client_for: Callable[[str, str], RegistryClient], warn: Warn) -> None:
        self.client_for = client_for
        self.warn = warn
        self.rebuild: Rebuild | None = None
        self.fetched = 0
        self.bytes_fetched = 0

    def fetch(self, store: Store, digest: str, note: dict[str, Any]) -> None:
        registry, repo = str(note.get("registry")), str(note.get("repository"))
        key = str(note.get("key"))
        desc = Descriptor("application/octet-stream", digest, int(note.get("size", -1)))
        try:
            self.bytes_fetched += Puller(store, self.client_for(registry, repo)
                                         ).fetch_blob(repo, desc)
            self.fetched += 1
        except IntegrityError as e:
            self.warn(f"layer cache {registry}/{repo}: entry {cache_tag(key)} (key {key}) "
                      f"has a bad blob ({e}); building the layer again")
            store.drop_remote_note(digest)
            if self.rebuild is None or not self.rebuild(key, digest):
                raise IntegrityError(f"layer cache entry for key {key} has a bad blob "
                                     f"{digest}; run the build again (it rebuilds the "
                                     "layer)") from None
            return
        store.drop_remote_note(digest)


_clients: dict[tuple[str, bool, str | None], RegistryClient] = {}
_clients_lock = threading.Lock()


def client_for(registry: str, repo: str, *, insecure: bool = False,
               ca_file: str | None = None) -> RegistryClient:
    """One client per registry for this process (credentials as for push and pull;
    TLS as `push --ca-file/--insecure`: `--cache-ca-file/--cache-insecure`)."""
    ref = parse(f"{registry}/{repo}")
    with _clients_lock:
        key = (ref.registry, insecure, ca_file)
        if key not in _clients:
            _clients[key] = RegistryClient(ref.registry, ref.api_host, insecure=insecure,
                                           ca_file=ca_file,
                                           tls_options=("--cache-ca-file", "--cache-insecure"))
        return _clients[key]


def open_cache(spec: str, mode: str, store: Store, warn: Warn, *, insecure: bool = False,
               ca_file: str | None = None) -> RegistryLayerCache:
    """The cache `--cache REGISTRY/REPO --cache-mode read|readwrite` names."""
    ref = parse(spec)
    if ref.tag or ref.digest:
        raise OciforgeError(f"--cache takes REGISTRY/REPO, not a tag or digest: {spec}")
    client = client_for(ref.registry, ref.repository, insecure=insecure, ca_file=ca_file)
    return RegistryLayerCache(client, ref.repository, store, write=mode == "readwrite",
                              warn=warn)
