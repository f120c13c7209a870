"""`store fsck` and `store gc`: keep the store honest and small."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from .digests import digest_hex
from .oci import Descriptor, walk
from .store import Store, hash_file_matches, remove_path


@dataclass
class FsckReport:
    checked: int = 0
    bytes_checked: int = 0
    corrupt: list[dict[str, str]] = field(default_factory=list)
    dropped_records: list[str] = field(default_factory=list)
    dangling_tags: list[str] = field(default_factory=list)
    stale_tmp: int = 0

    @property
    def clean(self) -> bool:
        return not (self.corrupt or self.dropped_records or self.dangling_tags)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "clean": self.clean}


def fsck(store: Store, repair: bool = True) -> FsckReport:
    """Re-hash every blob. Corrupt blobs go to quarantine; records and tags that
    need a missing blob are reported (records dropped, so the layer is rebuilt)."""
    report = FsckReport()
    with store.gc_lock():
        for digest in store.iter_blobs():
            path = store.blob_path(digest)
            ok, got = hash_file_matches(path, digest)
            report.checked += 1
            report.bytes_checked += path.stat().st_size
            if not ok:
                entry = {"digest": digest, "actual": got}
                if repair:
                    dest = store.quarantine_dir / f"{digest_hex(digest)}.{int(time.time())}"
                    os.replace(path, dest)
                    entry["quarantined_to"] = str(dest)
                report.corrupt.append(entry)
        for rec in list(store.iter_records()):
            if not all(store.has_blob(b.digest, b.size) for b in rec.blobs.values()):
                report.dropped_records.append(f"{rec.name} ({rec.input_key})")
                if repair:
                    store.drop_record(rec.input_key)
        report.dangling_tags += [name for name, entry in store.tags().items()
                                 if not _complete(store, entry)]
        stale = store.stale_tmp_files()
        report.stale_tmp = len(stale)
        if repair:
            for p in stale:
                remove_path(p)
    return report


def _complete(store: Store, entry: dict[str, Any]) -> bool:
    """Whether every blob a tag reaches is in the store (and its documents read)."""
    try:
        return all(store.has_blob(node.descriptor.digest)
                   for node in walk([Descriptor.from_json(entry)], store.read_bytes))
    except Exception:  # a document missing, corrupt or not JSON; a malformed entry
        return False


@dataclass
class GcReport:
    removed_blobs: int = 0
    freed_bytes: int = 0
    removed_records: int = 0
    removed_tmp: int = 0
    kept_blobs: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gc(store: Store, prune_layers: bool = False, dry_run: bool = False) -> GcReport:
    """Remove blobs nothing references. Cached layers count as references unless
    `prune_layers`, which first drops records of layers no tagged image uses."""
    report = GcReport()
    with store.gc_lock():
        if prune_layers:
            used = store.referenced_blobs(include_records=False)
            for rec in list(store.iter_records()):
                if not any(b.digest in used for b in rec.blobs.values()):
                    report.removed_records += 1
                    if not dry_run:
                        store.drop_record(rec.input_key)
        keep = store.referenced_blobs(include_records=True)
        for digest in store.iter_blobs():
            if digest in keep:
                report.kept_blobs += 1
                continue
            path = store.blob_path(digest)
            report.removed_blobs += 1
            report.freed_bytes += path.stat().st_size
            if not dry_run:
                path.unlink(missing_ok=True)
        for p in store.stale_tmp_files():
            report.removed_tmp += 1
            if not dry_run:
                remove_path(p)
        if not dry_run:
            _drop_stale_scans(store)
    return report


def _drop_stale_scans(store: Store) -> None:
    """SBOM layer scans (`ociforge/sbom/<diff_id>-*.json`) of layers no record has."""
    live = {r.diff_id.partition(":")[2] for r in store.iter_records()}
    for p in sorted((store.meta_dir / "sbom").glob("*.json")):
        if p.name.split("-", 1)[0] not in live:
            p.unlink(missing_ok=True)
