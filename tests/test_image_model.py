"""The image model: typed layer records (old ones still read), images read from the
store one way, one rule for the record of a layer, and one way to read a layer's tar."""

from __future__ import annotations

import dataclasses
import json
import tarfile
from pathlib import Path

import pytest
from image_readers import assert_readers_agree

from ociforge.compression import compression_params
from ociforge.digests import digest_bytes
from ociforge.errors import ImageNotInStoreError, OciforgeError, StoreCorruptError
from ociforge.image import StoredLayer
from ociforge.maintenance import gc
from ociforge.oci import MT_INDEX, MT_MANIFEST, Descriptor
from ociforge.records import RECORD_VERSION, LayerRecord
from ociforge.registry.tree import walk as registry_walk
from ociforge.store import Store

from conftest import run_cli, write

GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
# A record as ociforge wrote them before records were typed: no `version` key.
TODAYS_RECORD = {
    "name": "hello", "input_key": digest_bytes(b"key"), "diff_id": digest_bytes(b"tar"),
    "size": 10240, "files": 3, "source_kind": "files",
    "blobs": {"gzip": {"digest": digest_bytes(b"blob"), "size": 120, "mediaType": GZIP}},
    "encoding_params": {"gzip": compression_params("gzip")},
    "provenance": {"sources": [{"files": [{"src": "files/hello.sh", "dest": "/hello"}]}]},
    "built_by": "ociforge 0.1.0", "built_at": 1700000000, "build_seconds": 0.012,
}


# -- layer records --------------------------------------------------------------------------


def test_todays_records_read_and_write_back_with_the_same_keys() -> None:
    rec = LayerRecord.from_json(TODAYS_RECORD)
    assert rec.version == 0
    assert rec.blob("gzip") == Descriptor(GZIP, digest_bytes(b"blob"), 120)
    assert rec.compressions == ("gzip",)
    assert rec.sources() == [("files", TODAYS_RECORD["provenance"]["sources"][0])]
    assert rec.to_json() == {**TODAYS_RECORD, "version": RECORD_VERSION}
    again = LayerRecord.from_json(json.loads(json.dumps(rec.to_json())))
    assert again == dataclasses.replace(rec, version=RECORD_VERSION)


def test_records_cannot_be_changed() -> None:
    rec = LayerRecord.from_json(TODAYS_RECORD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        rec.blobs["zstd"] = rec.blob("gzip")  # type: ignore[index]
    rec.provenance["sources"].clear()
    assert rec.sources()  # a copy was cleared, not the record


def test_a_blob_is_reused_only_if_made_with_todays_parameters() -> None:
    rec = LayerRecord.from_json(TODAYS_RECORD)
    assert rec.has_params_for("gzip") and not rec.has_params_for("zstd")
    older = {k: v for k, v in TODAYS_RECORD.items() if k != "encoding_params"}
    zstd = {"digest": digest_bytes(b"z"), "size": 1, "mediaType": GZIP[:-4] + "zstd"}
    older["blobs"] = {**TODAYS_RECORD["blobs"], "zstd": zstd}
    legacy = LayerRecord.from_json(older)
    # Before parameters were recorded gzip was made as today; zstd with another job size.
    assert legacy.has_params_for("gzip") and not legacy.has_params_for("zstd")
    other = {**TODAYS_RECORD, "encoding_params": {"gzip": "isal-0.0/level-9"}}
    assert not LayerRecord.from_json(other).has_params_for("gzip")
    added = legacy.with_blob("zstd", Descriptor(zstd["mediaType"], zstd["digest"], 1))
    assert added.has_params_for("zstd") and added.version == RECORD_VERSION


def test_what_is_not_a_record_is_refused() -> None:
    for broken in ({}, {"name": "x"}, {**TODAYS_RECORD, "blobs": [1]}, []):
        with pytest.raises(ValueError, match="not a layer record"):
            LayerRecord.from_json(broken)


def _twin(rec: LayerRecord, key: str, blob: Descriptor) -> LayerRecord:
    return dataclasses.replace(rec, name=f"{rec.name}-{key[7:11]}", input_key=key,
                               blobs={"gzip": blob})


def test_record_for_picks_the_same_record_whatever_the_file_order(tmp_path: Path) -> None:
    """Records of one diff_id: the one naming the manifest's blob, then the lowest key."""
    rec = LayerRecord.from_json(TODAYS_RECORD)
    low, high = sorted(digest_bytes(x) for x in (b"first", b"second"))
    blob_a, blob_b = (Descriptor(GZIP, digest_bytes(x), 1) for x in (b"a", b"b"))
    for keys in ((low, high), (high, low)):  # files are read in key order: both orders
        store = Store(tmp_path / keys[0][7:15])
        a, b = _twin(rec, keys[0], blob_a), _twin(rec, keys[1], blob_b)
        store.write_record(a)
        store.write_record(b)
        lowest = a if keys[0] == low else b

        def pick(blob: str | None = None, store: Store = store) -> str | None:
            found = store.record_for(rec.diff_id, blob)
            return found.name if found else None

        assert pick(blob_a.digest) == a.name and pick(blob_b.digest) == b.name
        assert pick() == pick(digest_bytes(b"elsewhere")) == lowest.name
        assert store.record_for(digest_bytes(b"no such layer")) is None


# -- stored images --------------------------------------------------------------------------


@pytest.fixture
def assembled(tmp_path: Path, hello_project: Path) -> Path:
    store = tmp_path / "store"
    r = run_cli("assemble", "hello", store=store, project=hello_project)
    assert r.rc == 0, r.err
    return store


def test_stored_image_of_an_assembled_image(assembled: Path) -> None:
    info = run_cli("inspect", "hello", "--json", store=assembled).json()
    img = Store(assembled).image("hello")
    assert (img.name, img.reference, img.platform) == ("hello", "hello:latest", "linux/amd64")
    assert img.descriptor.digest == info["manifest_digest"]
    assert img.descriptor.media_type == MT_MANIFEST
    assert img.config_descriptor.digest == info["config_digest"]
    assert img.config["config"]["User"] == "185:185"
    assert [layer.name for layer in img.layers] == ["busybox", "hello"]
    assert [layer.diff_id for layer in img.layers] == img.config["rootfs"]["diff_ids"]
    for layer in img.layers:
        assert layer.record and layer.record.blob("gzip") == layer.descriptor
        assert layer.compression == "gzip"
    assert img.size == info["size"]
    assert img.blobs() == [img.config_descriptor, *(x.descriptor for x in img.layers)]
    img.manifest["layers"].clear()
    img.config["config"].clear()
    assert img.manifest["layers"] and img.config["config"]  # each call reads a copy


def test_image_not_in_the_store_says_how_to_make_it(assembled: Path) -> None:
    with pytest.raises(ImageNotInStoreError, match="run `ociforge assemble nosuch`"):
        Store(assembled).image("nosuch")
    r = run_cli("inspect", "nosuch", store=assembled)
    assert r.rc == 1 and "image 'nosuch' is not in the store" in r.err


def _members(layer: StoredLayer) -> list[str]:
    with layer.uncompressed() as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        return [ti.name for ti in tar]


def test_uncompressed_reads_the_layer_tar(assembled: Path) -> None:
    busybox, hello = Store(assembled).image("hello").layers
    assert "bin/busybox" in _members(busybox)
    assert {"usr/local/bin/hello", "etc/motd", "bin/sh"} <= set(_members(hello))


def _damage(store: Path, digest: str) -> None:
    path = Store(store).blob_path(digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_uncompressed_refuses_a_damaged_blob(assembled: Path, hello_project: Path,
                                             compression: str) -> None:
    if compression != "gzip":
        r = run_cli("assemble", "hello", "--compression", compression, store=assembled,
                    project=hello_project)
        assert r.rc == 0, r.err
    busybox = Store(assembled).image("hello").layers[0]
    assert busybox.compression == compression
    _damage(assembled, busybox.descriptor.digest)
    with pytest.raises(StoreCorruptError, match=busybox.descriptor.digest):
        _members(busybox)


def test_uncompressed_refuses_a_tar_that_is_not_the_layer(assembled: Path) -> None:
    """A config whose diff_id does not match the blob's content is caught on reading."""
    busybox = Store(assembled).image("hello").layers[0]
    wrong = dataclasses.replace(busybox, diff_id=digest_bytes(b"another tar"))
    with pytest.raises(StoreCorruptError, match="holds a tar with diff_id"):
        _members(wrong)


# -- one walk over the manifest graph -------------------------------------------------------


def test_one_walk_for_gc_and_push_whatever_the_index_entry_says(tmp_path: Path) -> None:
    """An image tagged by another tool without a mediaType, and an index: gc keeps
    what the push would send, and the push sends children before their parents."""
    s = Store(tmp_path / "s")
    config, layer = s.put_bytes(b"{}"), s.put_bytes(b"layer")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                           "config": {"mediaType": "c", "digest": config, "size": 2},
                           "layers": [{"mediaType": GZIP, "digest": layer, "size": 5}]}).encode()
    m = Descriptor(MT_MANIFEST, s.put_bytes(manifest), len(manifest))
    s.tag("bare", Descriptor("", m.digest, m.size))
    assert gc(s).removed_blobs == 0 and s.has_blob(layer) and s.has_blob(config)
    index = json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX,
                        "manifests": [m.to_json()]}).encode()
    i = Descriptor(MT_INDEX, s.put_bytes(index), len(index))
    s.untag("bare")
    s.tag("multi", i)
    tree = registry_walk(s, i)
    assert [d.digest for d, _ in tree.manifests] == [m.digest, i.digest]
    assert [b.digest for b in tree.blobs] == [config, layer]
    assert s.referenced_blobs(include_records=False) == {i.digest, m.digest, config, layer}
    assert gc(s).removed_blobs == 0
    # A name tagged with an index stands for one of its images (test_platforms.py): this
    # index's only image is no image (its config lists no diff_ids), which is said.
    with pytest.raises(OciforgeError, match=r"image 'multi': its manifest lists 1 layers "
                       "but its config 0 diff_ids"):
        s.image("multi")


# -- every reader names the same record -----------------------------------------------------


def test_inspect_catalog_and_sbom_agree_when_records_share_a_diff_id(
        tmp_path: Path, hello_project: Path) -> None:
    """`busybox-twin` makes the same tar as `busybox` from another input key; the zstd
    image's blob is only in the twin's record."""
    busybox = (hello_project / "layers" / "busybox.yaml").read_text()
    write(hello_project / "layers" / "busybox-twin.yaml",
          busybox.replace("  paths:", "  preserve_owners: true\n  paths:"))
    write(hello_project / "recipes" / "twins.yaml", """\
        images:
          twin:
            layers: [busybox-twin, hello]
          twin-zstd:
            layers: [busybox-twin, hello]
            compression: zstd
        """)
    store = tmp_path / "store"
    r = run_cli("assemble", "hello", "twin", "twin-zstd", store=store, project=hello_project)
    assert r.rc == 0, r.err
    s = Store(store)
    diff_ids = {rec.name: rec.diff_id for rec in s.iter_records()}
    assert diff_ids["busybox"] == diff_ids["busybox-twin"], "the twins must share a diff_id"
    names = assert_readers_agree(store, hello_project, ["hello", "twin", "twin-zstd"],
                                 tmp_path)
    assert names["twin-zstd"] == ["busybox-twin", "hello"]
    lowest = min((r for r in s.iter_records() if r.diff_id == diff_ids["busybox"]),
                 key=lambda r: r.input_key)
    assert names["hello"][0] == names["twin"][0] == lowest.name


def test_a_store_of_todays_records_is_used_without_rebuilding(assembled: Path,
                                                              hello_project: Path) -> None:
    """Stores written before records had a version keep working: no layer rebuilt,
    the same image, `layers ls --json` with the same keys."""
    before = run_cli("layers", "ls", "--json", store=assembled).json()
    for path in (assembled / "ociforge" / "layers").glob("*.json"):
        data = json.loads(path.read_text())
        assert data.pop("version") == RECORD_VERSION
        path.write_text(json.dumps(data, sort_keys=True, indent=1) + "\n")
    r = run_cli("assemble", "hello", "--json", store=assembled, project=hello_project)
    assert r.rc == 0, r.err
    assert sorted(r.json()["layers"]["reused"]) == ["busybox", "hello"]
    assert r.json()["images"][0]["manifest_digest"] == \
        run_cli("inspect", "hello", "--json", store=assembled).json()["manifest_digest"]
    assert run_cli("layers", "ls", "--json", store=assembled).json() == before
    assert set(before[0]) == {"name", "input_key", "diff_id", "size", "files", "source",
                              "blobs", "provenance"}
