"""`store fsck` and `store gc`: keep the store honest and small.

gc deletes only what it proved unreferenced: it reads the whole tagged graph and
every layer record first, and if any of it cannot be read it refuses (exit 5, or 1
when the host refused a read), naming the tag or record, with nothing removed; what
a missing manifest or an unparseable record named is unknown, so deleting "the rest"
could delete it. fsck is what repairs: it quarantines corrupt blobs, entries of
blobs/sha256 that are not files, and records that cannot be read, drops records whose
blobs are gone, and rebuilds a damaged index.json (recovery.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .digests import digest_hex
from .errors import OciforgeError, StoreCorruptError
from .oci import Descriptor, walk
from .records import LayerRecord
from .recovery import recover_index
from .store import Store, hash_file_matches, remove_path
from .store_index import IndexDamagedError


@dataclass
class FsckReport:
    checked: int = 0
    bytes_checked: int = 0
    corrupt: list[dict[str, str]] = field(default_factory=list)
    dropped_records: list[str] = field(default_factory=list)
    unreadable_files: list[dict[str, str]] = field(default_factory=list)  # records, …
    dangling_tags: list[str] = field(default_factory=list)
    index: dict[str, Any] | None = None  # set when index.json was damaged
    stale_tmp: int = 0

    @property
    def clean(self) -> bool:
        return not (self.corrupt or self.dropped_records or self.unreadable_files
                    or self.dangling_tags or self.index)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "clean": self.clean}


def _quarantine(store: Store, path: Path, repair: bool, entry: dict[str, str]
                ) -> dict[str, str]:
    if repair:
        dest = store.quarantine_dir / f"{path.name}.{int(time.time())}"
        os.replace(path, dest)
        entry["quarantined_to"] = str(dest)
    return entry


def fsck(store: Store, repair: bool = True) -> FsckReport:
    """Re-hash every blob. Corrupt blobs (and what is not a file) go to quarantine;
    records that cannot be read too; records and tags that need a missing blob are
    reported (records dropped, so the layer is rebuilt); a damaged index.json is
    rebuilt from what is left; a last good copy of the index that is not a file is
    quarantined and written again."""
    report = FsckReport()
    with store.gc_lock():
        try:
            store.read_index()
            index_problem = None
        except IndexDamagedError as e:
            index_problem = f"{e.path} {e.reason}"
        for digest in store.iter_blobs():
            path = store.blob_path(digest)
            report.checked += 1
            size = store.blob_size(digest)
            if size is None:
                report.corrupt.append(_quarantine(store, path, repair, {
                    "digest": digest, "actual": "not a file"}))
                continue
            ok, got = hash_file_matches(path, digest)
            report.bytes_checked += size
            if not ok:
                report.corrupt.append(_quarantine(store, path, repair, {
                    "digest": digest, "actual": got}))
        for path in store.record_files():
            try:
                store.load_record_file(path)
            except StoreCorruptError as e:
                report.unreadable_files.append(_quarantine(store, path, repair, {
                    "path": str(path), "problem": str(e).split("; ")[0]}))
        last_good = store.last_good_index
        if os.path.lexists(last_good) and not last_good.is_file():
            report.unreadable_files.append(_quarantine(store, last_good, repair, {
                "path": str(last_good), "problem": f"{last_good} is not a file"}))
        for rec in list(store.iter_records()):
            if not all(store.available(b.digest, b.size) for b in rec.blobs.values()):
                report.dropped_records.append(f"{rec.name} ({rec.input_key})")
                if repair:
                    store.drop_record(rec.input_key)
        if index_problem:
            report.index = recover_index(store, index_problem, repair).to_json()
        if not index_problem or repair:
            report.dangling_tags += [name for name, entry in store.tags().items()
                                     if not _complete(store, entry)]
            if repair:
                store.ensure_last_good()
        stale = store.stale_tmp_files()
        report.stale_tmp = len(stale)
        if repair:
            for p in stale:
                remove_path(p)
    return report


def _complete(store: Store, entry: dict[str, Any]) -> bool:
    """Whether every blob a tag reaches is in the store or noted in the remote layer
    cache (and its documents read)."""
    try:
        return all(store.available(node.descriptor.digest, node.descriptor.size)
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


@dataclass
class _GcPlan:
    records: list[LayerRecord]         # those kept
    drop: list[LayerRecord]            # pruned
    blobs: list[tuple[Path, int]]      # to remove, with their sizes
    kept_blobs: int
    tmp: list[Path]


def gc(store: Store, prune_layers: bool = False, dry_run: bool = False) -> GcReport:
    """Remove blobs nothing references. Cached layers count as references unless
    `prune_layers`, which first drops records of layers no tagged image uses.
    Everything is read before anything is removed; what cannot be read stops gc (see
    the module's docstring)."""
    report = GcReport()
    with store.gc_lock():
        try:
            plan = _plan(store, prune_layers)
        except StoreCorruptError as e:
            raise StoreCorruptError(f"store gc removed nothing: {e}") from e
        except OciforgeError as e:
            raise OciforgeError(f"store gc removed nothing: {e}") from e
        except OSError as e:
            raise OciforgeError(f"store gc removed nothing: {e.filename}: {e.strerror}"
                                ) from e
        report.kept_blobs = plan.kept_blobs
        for rec in plan.drop:
            report.removed_records += 1
            if not dry_run:
                store.drop_record(rec.input_key)
        for path, size in plan.blobs:
            report.removed_blobs += 1
            report.freed_bytes += size
            if not dry_run:
                path.unlink(missing_ok=True)
        for p in plan.tmp:
            report.removed_tmp += 1
            if not dry_run:
                remove_path(p)
        if not dry_run:
            _drop_stale_scans(store, plan.records)
            _drop_stale_notes(store, plan.records)
    return report


def _drop_stale_notes(store: Store, records: list[LayerRecord]) -> None:
    """Notes of blobs left in a layer cache (`ociforge/remote/`) that no kept record
    names: nothing will ask for them."""
    live = {digest_hex(b.digest) for r in records for b in r.blobs.values()}
    if store.remote_dir.is_dir():
        for path in store.remote_dir.glob("*.json"):
            if path.stem not in live:
                path.unlink(missing_ok=True)


def _plan(store: Store, prune_layers: bool) -> _GcPlan:
    records = list(store.iter_records(strict=True))
    tagged = store.referenced_blobs(include_records=False)
    drop = [r for r in records
            if prune_layers and not any(b.digest in tagged for b in r.blobs.values())]
    dropped = {r.input_key for r in drop}
    kept = [r for r in records if r.input_key not in dropped]
    keep = tagged.union(*({b.digest for b in r.blobs.values()} for r in kept))
    plan = _GcPlan(kept, drop, [], 0, store.stale_tmp_files())
    for digest in store.iter_blobs():
        path = store.blob_path(digest)
        size = store.blob_size(digest)
        if size is None:
            raise StoreCorruptError(f"{path} is not a file; run `ociforge store fsck` to "
                                    "quarantine it")
        if digest in keep:
            plan.kept_blobs += 1
        else:
            plan.blobs.append((path, size))
    return plan


def _drop_stale_scans(store: Store, records: list[LayerRecord]) -> None:
    """Layer scans of layers no record has: the SBOM's (`ociforge/sbom/<diff_id>-*.json`)
    and the checks' listings (`ociforge/checks/<diff_id>-*.json`)."""
    live = {r.diff_id.partition(":")[2] for r in records}
    for kind in ("sbom", "checks"):
        for p in sorted((store.meta_dir / kind).glob("*.json")):
            if p.name.split("-", 1)[0] not in live:
                p.unlink(missing_ok=True)
