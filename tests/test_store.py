"""The store: a valid OCI layout, atomic idempotent writes, verified reads, fsck, gc."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from ociforge.digests import digest_bytes
from ociforge.errors import StoreCorruptError
from ociforge.maintenance import fsck, gc
from ociforge.records import LayerRecord
from ociforge.store import MT_MANIFEST, Descriptor, Store


def _record(key: str, blob: str, size: int, name: str = "l") -> LayerRecord:
    """A cached layer whose gzip blob is `blob`."""
    return LayerRecord(name=name, input_key=key, diff_id=digest_bytes(name.encode()),
                       blobs={"gzip": Descriptor("x", blob, size)})


def test_fresh_store_is_an_oci_layout(tmp_path: Path) -> None:
    s = Store(tmp_path / "s")
    assert json.loads((s.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads((s.root / "index.json").read_text())["manifests"] == []


def test_writes_are_idempotent_and_leave_no_temp_files(tmp_path: Path) -> None:
    s = Store(tmp_path / "s")
    d1 = s.put_bytes(b"hello")
    d2 = s.put_bytes(b"hello")
    assert d1 == d2 == digest_bytes(b"hello")
    assert s.read_bytes(d1) == b"hello"
    assert list(s.tmp_dir.iterdir()) == []


def test_aborted_write_is_invisible(tmp_path: Path) -> None:
    s = Store(tmp_path / "s")
    w = s.new_blob()
    w.write(b"partial")
    w.abort()
    assert list(s.iter_blobs()) == [] and list(s.tmp_dir.iterdir()) == []


def test_corrupt_blob_detected_on_read(tmp_path: Path) -> None:
    s = Store(tmp_path / "s")
    d = s.put_bytes(b"important bytes")
    s.blob_path(d).write_bytes(b"importent bytes")
    with pytest.raises(StoreCorruptError, match=f"blob {d} is corrupt"):
        s.read_bytes(d)


def test_fsck_quarantines_corrupt_blobs_and_drops_records(tmp_path: Path) -> None:
    s = Store(tmp_path / "s")
    good, bad = s.put_bytes(b"good"), s.put_bytes(b"bad!")
    key = digest_bytes(b"key")
    s.write_record(_record(key, bad, 4))
    s.blob_path(bad).write_bytes(b"BAD!")
    report = fsck(s)
    assert not report.clean
    assert [c["digest"] for c in report.corrupt] == [bad]
    assert not s.has_blob(bad) and s.has_blob(good)
    assert len(list(s.quarantine_dir.iterdir())) == 1
    assert s.read_record(key) is None  # the layer will be rebuilt
    assert fsck(s).clean


def test_gc_keeps_tagged_and_cached_removes_the_rest(tmp_path: Path) -> None:
    s = Store(tmp_path / "s")
    layer, cfg, orphan, cached = (s.put_bytes(x) for x in (b"L", b"{}", b"orphan", b"C"))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                           "config": {"mediaType": "x", "digest": cfg, "size": 2},
                           "layers": [{"mediaType": "y", "digest": layer, "size": 1}]}).encode()
    md = s.put_bytes(manifest)
    s.tag("img", Descriptor(MT_MANIFEST, md, len(manifest)))
    key = digest_bytes(b"k")
    s.write_record(_record(key, cached, 1, "c"))
    (s.tmp_dir / "999999999-dead.part").write_bytes(b"left by a killed writer")
    report = gc(s)
    assert report.removed_blobs == 1 and report.removed_tmp == 1
    assert not s.has_blob(orphan)
    assert all(s.has_blob(d) for d in (layer, cfg, md, cached))
    report = gc(s, prune_layers=True)
    assert report.removed_records == 1 and not s.has_blob(cached)


def _tagger(root: str, n: int) -> None:
    s = Store(root)
    for i in range(30):
        data = json.dumps({"schemaVersion": 2, "layers": [], "annotations": {"n": f"{n}-{i}"}}
                          ).encode()
        s.tag(f"img-{n}-{i}", Descriptor(MT_MANIFEST, s.put_bytes(data), len(data)))
        s.put_bytes(b"shared blob")


def test_two_processes_tagging_lose_nothing(tmp_path: Path) -> None:
    root = str(tmp_path / "s")
    Store(root)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_tagger, args=(root, n)) for n in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    s = Store(root)
    assert len(s.tags()) == 60
    assert fsck(s).clean


def test_store_location_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ociforge.store import default_store_path

    monkeypatch.delenv("OCIFORGE_STORE", raising=False)
    monkeypatch.delenv("OCIFORGE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "ociforge" / "store"
    monkeypatch.setenv("OCIFORGE_STORE", str(tmp_path / "mine"))
    assert default_store_path() == tmp_path / "mine"
    assert os.fspath(default_store_path()).endswith("mine")


def test_tagging_keeps_foreign_index_entries(tmp_path: Path) -> None:
    """An index.json entry without a ref name (another tool's) survives tagging."""
    s = Store(tmp_path / "s")
    foreign = {"mediaType": MT_MANIFEST, "digest": s.put_bytes(b"{}"), "size": 2,
               "annotations": {"io.example": "x"}}
    index = json.loads((s.root / "index.json").read_text())
    index["manifests"].append(foreign)
    (s.root / "index.json").write_text(json.dumps(index))
    data = b'{"schemaVersion":2}'
    s.tag("img", Descriptor(MT_MANIFEST, s.put_bytes(data), len(data)))
    manifests = json.loads((s.root / "index.json").read_text())["manifests"]
    assert foreign in manifests and list(s.tags()) == ["img"]
