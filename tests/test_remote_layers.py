"""The layer builder's remote cache seam and the store's lazy remote blobs, without a
registry: a second store on disk plays the shared cache (a real `RemoteCache` and
`RemoteBlobs`, the shape a shared-filesystem cache would have). The registry cache
itself is tested in test_layer_cache.py."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from ociforge.errors import StoreCorruptError
from ociforge.maintenance import fsck, gc
from ociforge.recipes import Project
from ociforge.records import LayerRecord
from ociforge.session import BuildSession, SessionOptions
from ociforge.store import Store

from conftest import make_hello_project


class StoreCache:
    """A shared cache that is another store: records and blobs copied on demand."""

    def __init__(self, shared: Store, local: Store) -> None:
        self.shared, self.local = shared, local
        self.lookups: list[str] = []
        self.puts: list[str] = []

    def lookup(self, key: str) -> LayerRecord | None:
        self.lookups.append(key)
        rec = self.shared.read_record(key)
        if rec is not None:
            for blob in rec.blobs.values():
                self.local.note_remote(blob.digest, blob.size, {"key": key})
        return rec

    def put(self, record: LayerRecord) -> None:
        self.puts.append(record.name)
        for blob in record.blobs.values():
            self.shared.put_bytes(self.local.read_bytes(blob.digest))
        self.shared.write_record(record)

    def fetch(self, store: Store, digest: str, note: dict[str, Any]) -> None:
        store.put_bytes(self.shared.read_bytes(digest))
        store.drop_remote_note(digest)


def _session(tmp_path: Path, name: str, shared: Store) -> tuple[BuildSession, StoreCache]:
    store = Store(tmp_path / name)
    cache = StoreCache(shared, store)
    store.remote = cache
    return BuildSession(store, Project.load(tmp_path / "proj"), SessionOptions(sde=0),
                        remote=cache), cache


@pytest.fixture
def shared(tmp_path: Path) -> Store:
    (tmp_path / "proj").mkdir()
    make_hello_project(tmp_path / "proj")
    return Store(tmp_path / "shared")


def test_built_once_then_taken_without_bytes(tmp_path: Path, shared: Store) -> None:
    first, cache1 = _session(tmp_path, "a", shared)
    (image,) = first.assemble(["hello"])
    assert first.stats.built == ["busybox", "hello"] and cache1.puts == ["busybox", "hello"]

    second, cache2 = _session(tmp_path, "b", shared)
    (same,) = second.assemble(["hello"])
    assert second.stats.built == [] and second.stats.remote == ["busybox", "hello"]
    assert same.manifest.digest == image.manifest.digest  # a manifest from records only
    layers = [r.blob("gzip").digest for r in same.layers]
    assert not any(second.store.has_blob(d) for d in layers)
    assert cache2.puts == []
    # A blob's bytes come when an output reads them, then are the store's own.
    second.export(["hello"], archive=tmp_path / "hello.tar")
    assert all(second.store.has_blob(d) for d in layers)
    assert not list(second.store.remote_dir.glob("*.json"))


def test_noted_blobs_count_as_present_until_read(tmp_path: Path, shared: Store) -> None:
    _session(tmp_path, "a", shared)[0].assemble(["hello"])
    session, _ = _session(tmp_path, "b", shared)
    session.assemble(["hello"])
    store = session.store
    report = fsck(store, repair=False)
    assert report.clean and not report.dangling_tags
    # Another run of the same store: the records are used as they are (no lookup).
    again, cache = _session(tmp_path, "b", shared)
    again.assemble(["hello"])
    assert again.stats.reused == ["busybox", "hello"] and cache.lookups == []
    # Without a way to fetch, reading a noted blob says which cache holds it.
    plain = Store(tmp_path / "b")
    (digest,) = [r.blob("gzip").digest for r in plain.iter_records() if r.name == "hello"]
    with pytest.raises(StoreCorruptError, match="--cache"):
        plain.read_bytes(digest)
    # gc keeps the notes of blobs a record names, drops the others.
    shutil.rmtree(store.records_dir)
    store.records_dir.mkdir()
    store.untag("hello")
    gc(store)
    assert not list(store.remote_dir.glob("*.json"))
