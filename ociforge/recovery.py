"""fsck's rebuild of a damaged index.json: lose no tag that can be found, and leave
gc nothing to delete that a lost tag may have named.

Tags come from, in this order: the entries still whole in the damaged file, then the
last good copy the store keeps (`ociforge/index.last-good.json`, rewritten after every
index write). A manifest or index in the store that none of them reaches and no other
document names may have been tagged in what was lost, so it is kept under the tag
`recovered-<first 12 hex digits>` (annotated `io.ociforge.recovered`): nothing is
deleted on a guess; `ociforge store untag` drops what is not wanted. The damaged file
is moved to the quarantine, not deleted.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from .digests import digest_hex
from .errors import StoreCorruptError
from .oci import INDEX_TYPES, MANIFEST_TYPES, MT_INDEX, MT_MANIFEST, Descriptor, walk
from .store import Store
from .store_index import REF_NAME, ref_name, salvage_entries, unique_entries

RECOVERED = "io.ociforge.recovered"
MAX_DOCUMENT = 4 << 20  # registries refuse manifests larger than this
SOURCES = ("damaged index", "last good copy")


@dataclass
class IndexRecovery:
    problem: str
    quarantined_to: str | None = None
    tags: dict[str, str] = field(default_factory=dict)  # name (or digest) → where from

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def recover_index(store: Store, problem: str, repair: bool) -> IndexRecovery:
    """Rebuild index.json (when `repair`) from what is left; report where each tag
    came from either way."""
    out = IndexRecovery(problem)
    sources = [salvage_entries(_read(store.index_path)),
               salvage_entries(_read(store.last_good_index))]
    entries = []
    for n, entry in unique_entries(*sources):
        entries.append(entry)
        out.tags[ref_name(entry) or entry["digest"]] = SOURCES[n]
    for entry in _unreached_documents(store, entries):
        entries.append(entry)
        out.tags[entry["annotations"][REF_NAME]] = "untagged manifest"
    if repair:
        if os.path.lexists(store.index_path):
            dest = store.quarantine_dir / f"index.json.{int(time.time())}"
            os.replace(store.index_path, dest)
            out.quarantined_to = str(dest)
        entries.sort(key=lambda m: (ref_name(m) or "", m["digest"]))
        store.replace_index({"schemaVersion": 2, "mediaType": MT_INDEX,
                             "manifests": entries})
    return out


def _read(path: os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError):
        return b""


def _unreached_documents(store: Store, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Index entries for the manifests and indexes in the store that `entries` do
    not reach and no other document names (the roots of what the index lost)."""
    reached = {node.descriptor.digest for node in
               walk([Descriptor.from_json(e) for e in entries], store.read_bytes,
                    strict=False)}
    documents: dict[str, tuple[str, int]] = {}
    named: set[str] = set()
    for digest in store.iter_blobs():
        found = _document(store, digest)
        if found is None:
            continue
        media_type, size, children = found
        documents[digest] = (media_type, size)
        named.update(children)
    return [{"mediaType": media_type, "digest": digest, "size": size,
             "annotations": {REF_NAME: f"recovered-{digest_hex(digest)[:12]}",
                             RECOVERED: "true"}}
            for digest, (media_type, size) in sorted(documents.items())
            if digest not in reached and digest not in named]


def _document(store: Store, digest: str) -> tuple[str, int, list[str]] | None:
    """(media type, size, digests of the manifests it lists) if the blob is an image
    manifest or index; None for anything else (layers, configs, damaged blobs)."""
    path = store.blob_path(digest)
    try:
        if not 0 < path.stat().st_size <= MAX_DOCUMENT:
            return None
        with open(path, "rb") as f:
            if f.read(1) != b"{":
                return None
        data = store.read_bytes(digest)
        doc = json.loads(data)
    except (OSError, ValueError, StoreCorruptError):
        return None
    if not isinstance(doc, dict):
        return None
    media_type = str(doc.get("mediaType") or "")
    if media_type in INDEX_TYPES or (not media_type and isinstance(doc.get("manifests"), list)):
        children = [str(m.get("digest")) for m in doc.get("manifests") or []
                    if isinstance(m, dict)]
        return media_type or MT_INDEX, len(data), children
    if media_type in MANIFEST_TYPES or (
            not media_type and isinstance(doc.get("layers"), list)
            and isinstance(doc.get("config"), dict)):
        return media_type or MT_MANIFEST, len(data), []
    return None
