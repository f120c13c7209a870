"""A damaged store loses nothing: gc refuses what it cannot prove unreferenced, fsck
repairs what it can (a damaged index.json included), every command says in one line
what is wrong (exit 5, or 1 for what the host refused), and an exported layout is a
copy that cannot damage the store.

Each test assembles the small hello project into a real store, then damages it the
way a disk, an editor or another tool would."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from ociforge.digests import digest_bytes
from ociforge.oci import MT_INDEX, MT_MANIFEST, Descriptor
from ociforge.store import Store

from conftest import make_hello_project, run_cli, write

FSCK_HINT = "run `ociforge store fsck`"


@dataclass
class Damaged:
    """A copy of the template: project, store, and the digests in it."""

    root: Path

    @property
    def project(self) -> Path:
        return self.root / "proj"

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def blobs(self) -> Path:
        return self.store / "blobs" / "sha256"

    @property
    def index(self) -> Path:
        return self.store / "index.json"

    def cli(self, *args: str | Path) -> tuple[int, str, str]:
        r = run_cli(*args, store=self.store, project=self.project)
        return r.rc, r.out, r.err

    def contents(self) -> dict[str, list[str]]:
        """What gc could delete: blob names and layer record names."""
        return {"blobs": sorted(os.listdir(self.blobs)),
                "records": sorted(os.listdir(self.store / "ociforge" / "layers"))}

    def manifest(self, name: str) -> str:
        tags = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
                for m in json.loads(self.index.read_bytes())["manifests"]}
        return tags[name]

    def blob(self, digest: str) -> Path:
        return self.blobs / digest.split(":")[1]

    def record_of(self, layer: str) -> Path:
        for p in (self.store / "ociforge" / "layers").glob("*.json"):
            if json.loads(p.read_bytes())["name"] == layer:
                return p
        raise AssertionError(f"no record of {layer}")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hello and hello-env assembled (same layers, two manifests), plus a layer `extra`
    that is only cached (no image uses it)."""
    root = tmp_path_factory.mktemp("damage")
    (root / "proj").mkdir()
    proj = make_hello_project(root / "proj")
    write(proj / "layers" / "extra.yaml",
          "source:\n  kind: files\n  files: [{src: files/etc, dest: /extra}]\n")
    write(proj / "recipes" / "env.yaml", """\
        images:
          hello-env:
            layers: [busybox, hello]
            config: {env: {GREETING: hi}}
        """)
    for args in (("assemble", "hello", "hello-env"), ("layers", "build", "extra")):
        r = run_cli(*args, store=root / "store", project=proj)
        assert r.rc == 0, r.err
    return root


@pytest.fixture
def d(template: Path, tmp_path: Path) -> Damaged:
    shutil.copytree(template, tmp_path / "t", symlinks=True)
    return Damaged(tmp_path / "t")


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "internal error" not in err
    return lines[0]


def hashes_to_name(path: Path) -> bool:
    return hashlib.sha256(path.read_bytes()).hexdigest() == path.name


# -- gc never deletes what it could not prove unreferenced ----------------------------------


def _tag(d: Damaged, name: str, data: bytes, media_type: str = MT_MANIFEST) -> str:
    s = Store(d.store)
    digest = s.put_bytes(data)
    s.tag(name, Descriptor(media_type, digest, len(data)))
    return digest


@pytest.mark.parametrize("damage", ["corrupt", "missing", "directory", "not-json"])
def test_gc_refuses_when_a_tagged_manifest_cannot_be_read(d: Damaged, damage: str) -> None:
    name, digest = "hello", d.manifest("hello")
    if damage == "corrupt":
        d.blob(digest).write_bytes(d.blob(digest).read_bytes().replace(b"{", b"[", 1))
    elif damage == "missing":
        d.blob(digest).unlink()
    elif damage == "directory":
        d.blob(digest).unlink()
        d.blob(digest).mkdir()
    else:  # a tag naming a blob that hashes right but is no manifest
        name, digest = "broken", _tag(d, "broken", b"not json")
    before = d.contents()
    for flags in ([], ["--prune-layers"], ["--dry-run"], ["--prune-layers", "--dry-run"]):
        rc, _, err = d.cli("store", "gc", *flags)
        assert rc == 5, (flags, err)
        line = one_line(err)
        assert line.startswith("ociforge: error: store gc removed nothing: ")
        assert f"image {name!r} ({digest}) cannot be read" in line
        assert d.contents() == before


def test_gc_refuses_when_an_index_child_cannot_be_read(d: Damaged) -> None:
    child = d.manifest("hello")
    index = json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [
        {"mediaType": MT_MANIFEST, "digest": child,
         "size": d.blob(child).stat().st_size}]}).encode()
    multi = _tag(d, "multi", index, MT_INDEX)
    Store(d.store).untag("hello")
    d.blob(child).unlink()
    before = d.contents()
    rc, _, err = d.cli("store", "gc", "--prune-layers")
    assert rc == 5
    line = one_line(err)
    assert f"image 'multi' ({multi}) cannot be read: blob {child} is missing" in line
    assert d.contents() == before


@pytest.mark.parametrize("damage", ["junk", "directory", "not-a-record"])
def test_gc_refuses_when_a_layer_record_cannot_be_read(d: Damaged, damage: str) -> None:
    """The record of `extra` names a blob no image uses: deleting it because the
    record could not be read would lose the cached layer on a guess."""
    record = d.record_of("extra")
    extra_blob = next(iter(json.loads(record.read_bytes())["blobs"].values()))["digest"]
    record.unlink()
    if damage == "junk":
        record.write_bytes(b'{"name": "extra", "blobs": {"gzip"')
    elif damage == "directory":
        record.mkdir()
    else:
        record.write_text('{"name": "extra"}')
    before = d.contents()
    for flags in ([], ["--prune-layers"]):
        rc, _, err = d.cli("store", "gc", *flags)
        assert rc == 5, err
        line = one_line(err)
        assert f"store gc removed nothing: layer record {record} " in line
        assert FSCK_HINT in line
        assert d.contents() == before

    # fsck moves the record aside; then the blob it named is unreferenced, and gc may go.
    rc, out, _ = d.cli("store", "fsck", "--json")
    assert rc == 5
    [entry] = json.loads(out)["unreadable_files"]
    assert entry["path"] == str(record) and Path(entry["quarantined_to"]).exists()
    rc, _, err = d.cli("store", "gc")
    assert rc == 0, err
    assert not d.blob(extra_blob).exists()


def test_gc_refuses_when_the_host_refuses_a_read(d: Damaged) -> None:
    """Permission denied is the host's condition (exit 1, naming the path), and gc
    still removes nothing."""
    work = Path(tempfile.mkdtemp(prefix="ocf-perm-", dir="/tmp"))
    try:
        work.chmod(0o755)
        shutil.copytree(d.root, work / "t", symlinks=True)
        d = Damaged(work / "t")
        d.root.chmod(0o755)
        manifest = d.blob(d.manifest("hello"))
        prefix = None
        if os.geteuid() == 0:  # root reads anything: run as nobody, the blob root's
            subprocess.run(["chown", "-R", "65534:65534", str(d.root)], check=True)
            os.chown(manifest, 0, 0)
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        manifest.chmod(0)
        before = d.contents()
        for flags in ([], ["--prune-layers"]):
            r = run_cli("store", "gc", *flags, store=d.store, prefix=prefix)
            assert r.rc == 1, r.err
            line = one_line(r.err)
            assert "store gc removed nothing: image 'hello'" in line
            assert f"{manifest}: Permission denied" in line
            assert d.contents() == before
    finally:
        shutil.rmtree(work)


def test_gc_refuses_when_the_blobs_directory_is_gone(d: Damaged) -> None:
    records = d.contents()["records"]
    shutil.rmtree(d.blobs)
    rc, _, err = d.cli("store", "gc", "--prune-layers")
    assert rc == 5
    assert f"image 'hello' ({d.manifest('hello')}) cannot be read" in one_line(err)
    assert d.contents()["records"] == records


# -- a damaged index.json: exit 5 everywhere, fsck rebuilds it ------------------------------


def _damage_index(d: Damaged, damage: str) -> None:
    text = d.index.read_bytes()
    if damage == "truncated":
        d.index.write_bytes(text[: len(text) // 2])
    elif damage == "not-an-index":
        d.index.write_text("[]")
    elif damage == "malformed-entry":
        index = json.loads(text)
        index["manifests"][0]["digest"] = "sha256:../../etc/passwd"
        d.index.write_text(json.dumps(index))
    elif damage == "missing":
        d.index.unlink()
    else:
        d.index.unlink()
        d.index.mkdir()


@pytest.mark.parametrize("damage", ["truncated", "not-an-index", "malformed-entry",
                                    "missing", "directory"])
def test_damaged_index_is_exit_5_everywhere_and_fsck_rebuilds_it(d: Damaged,
                                                                damage: str) -> None:
    digests = {name: d.manifest(name) for name in ("hello", "hello-env")}
    _damage_index(d, damage)
    before = d.contents()
    for args in (["images", "ls"], ["inspect", "hello"], ["assemble", "hello"],
                 ["store", "gc"], ["store", "untag", "hello"]):
        rc, _, err = d.cli(*args)
        assert rc == 5, (args, err)
        line = one_line(err)
        assert f"the store index {d.index} " in line and FSCK_HINT in line
    assert d.contents() == before

    rc, out, _ = d.cli("store", "fsck", "--json")
    assert rc == 5
    index = json.loads(out)["index"]
    assert str(d.index) in index["problem"]
    assert set(index["tags"]) == {"hello", "hello-env"}
    if damage != "missing":
        assert Path(index["quarantined_to"]).exists()  # kept, for a human to look at
    assert d.contents() == before
    for name, digest in digests.items():
        rc, out, err = d.cli("inspect", name, "--json")
        assert rc == 0, err
        assert json.loads(out)["manifest_digest"] == digest
    assert d.cli("store", "fsck")[0] == 0
    assert d.cli("store", "gc", "--json")[0] == 0
    assert d.contents() == before


def test_index_rebuilt_without_its_last_good_copy_keeps_every_manifest(d: Damaged) -> None:
    """A store from before the last good copy existed: what is whole in the damaged
    file is recovered, and a manifest no recovered tag reaches is kept under a
    `recovered-` tag, so the next gc deletes nothing."""
    env_digest = d.manifest("hello-env")
    extra = d.record_of("extra")
    extra_blob = next(iter(json.loads(extra.read_bytes())["blobs"].values()))["digest"]
    (d.store / "ociforge" / "index.last-good.json").unlink(missing_ok=True)
    text = d.index.read_bytes()
    d.index.write_bytes(text[: text.index(b'"hello-env"')])  # inside the second entry
    before = d.contents()

    rc, out, err = d.cli("store", "fsck")
    assert rc == 5
    assert "recovered tag hello (from the damaged index)" in out
    kept = f"recovered-{env_digest.split(':')[1][:12]}"
    assert f"kept a manifest no tag reaches as {kept}" in out
    rc, _, err = d.cli("store", "gc", "--prune-layers")
    assert rc == 0, err
    # Nothing deleted but the layer `extra`, which no image uses (as asked).
    after = d.contents()
    assert after["blobs"] == [b for b in before["blobs"] if b != extra_blob.split(":")[1]]
    assert after["records"] == [r for r in before["records"] if r != extra.name]
    rc, out, _ = d.cli("inspect", kept, "--json")
    assert rc == 0 and json.loads(out)["manifest_digest"] == env_digest
    assert d.cli("store", "untag", kept)[0] == 0
    assert d.cli("store", "gc")[0] == 0
    assert not d.blob(env_digest).exists()


def test_salvage_reads_each_whole_entry_of_a_damaged_index() -> None:
    from ociforge.store_index import salvage_entries

    entries = [{"annotations": {"org.opencontainers.image.ref.name": f"i{n}"},
                "digest": digest_bytes(str(n).encode()), "mediaType": MT_MANIFEST,
                "size": n} for n in range(3)]
    text = json.dumps({"schemaVersion": 2, "manifests": entries}).encode()
    assert salvage_entries(text) == entries
    assert salvage_entries(text[:-30]) == entries[:2]
    assert salvage_entries(b"\x00garbage" + text[10:]) == entries
    assert salvage_entries(b"") == []


# -- damage in blobs/ and in records: exit 5 naming it, fsck repairs ------------------------


def test_blob_that_is_a_directory(d: Damaged) -> None:
    manifest = d.blob(d.manifest("hello"))
    manifest.unlink()
    manifest.mkdir()
    rc, _, err = d.cli("inspect", "hello")
    assert rc == 5
    assert f"is not a file in the store ({manifest})" in one_line(err)
    stray = d.blobs / ("a" * 64)
    stray.mkdir()
    (stray / "x").write_text("not ours to delete")
    rc, _, err = d.cli("store", "gc")
    assert rc == 5 and "store gc removed nothing" in one_line(err)

    rc, out, _ = d.cli("store", "fsck", "--json")
    assert rc == 5
    corrupt = {c["digest"]: c for c in json.loads(out)["corrupt"]}
    assert set(corrupt) == {"sha256:" + manifest.name, "sha256:" + stray.name}
    assert (Path(corrupt["sha256:" + stray.name]["quarantined_to"]) / "x").exists()
    rc, _, err = d.cli("assemble", "hello")  # writes the manifest again
    assert rc == 0, err
    assert d.cli("store", "fsck")[0] == 0


def test_record_that_is_a_directory(d: Damaged) -> None:
    record = d.record_of("busybox")
    record.unlink()
    record.mkdir()
    rc, _, err = d.cli("assemble", "hello")
    assert rc == 5
    line = one_line(err)
    assert f"layer record {record} is a directory" in line and FSCK_HINT in line
    assert not list((d.store / "ociforge" / "tmp").iterdir())
    assert d.cli("store", "fsck")[0] == 5
    rc, out, err = d.cli("assemble", "hello", "--json")
    assert rc == 0, err
    assert json.loads(out)["layers"]["built"] == ["busybox"]
    assert d.cli("store", "fsck")[0] == 0


def test_layout_directory_that_is_a_file(d: Damaged) -> None:
    shutil.rmtree(d.blobs)
    d.blobs.write_text("")
    for args in (["inspect", "hello"], ["store", "fsck"]):
        rc, _, err = d.cli(*args)
        assert rc == 5
        assert f"{d.blobs} is not a directory" in one_line(err)


def test_tagged_blob_that_is_not_a_manifest(d: Damaged) -> None:
    digest = _tag(d, "broken", b"not json")
    rc, _, err = d.cli("inspect", "broken")
    assert rc == 5
    assert f"image 'broken' ({digest}) is damaged" in one_line(err)


# -- the OCI layout export is a copy, verified, and replaces bad blobs ----------------------


def _export(d: Damaged, out: Path) -> list[Path]:
    rc, _, err = d.cli("assemble", "hello", "--oci-layout", out)
    assert rc == 0, err
    return sorted((out / "blobs" / "sha256").iterdir())


def test_layout_export_is_a_copy_that_cannot_damage_the_store(d: Damaged) -> None:
    blobs = _export(d, d.root / "out")
    assert blobs and all(hashes_to_name(b) for b in blobs)
    for b in blobs:
        assert not os.path.samefile(b, d.blobs / b.name)
        with open(b, "r+b") as f:  # edited in place, as a careless tool would
            f.write(b"X")
    rc, out, _ = d.cli("store", "fsck", "--json")
    assert rc == 0 and json.loads(out)["corrupt"] == []


def test_reexport_replaces_corrupt_and_linked_blobs(d: Damaged) -> None:
    out = d.root / "out"
    blobs = _export(d, out)
    corrupt, linked = blobs[0], blobs[1]
    corrupt.unlink()
    corrupt.write_bytes(b"same name, wrong bytes")
    linked.unlink()
    os.link(d.blobs / linked.name, linked)  # what an older ociforge left
    assert _export(d, out) == blobs
    assert all(hashes_to_name(b) for b in blobs)
    assert not os.path.samefile(linked, d.blobs / linked.name)


def test_export_into_a_layout_with_a_damaged_index(d: Damaged) -> None:
    out = d.root / "out"
    _export(d, out)
    (out / "index.json").write_text("{")
    rc, _, err = d.cli("assemble", "hello", "--oci-layout", out)
    assert rc == 1
    assert f"{out / 'index.json'} is not an OCI image index" in one_line(err)
    assert (out / "index.json").read_text() == "{"


def test_untag_then_gc_removes_the_image(d: Damaged) -> None:
    manifest = d.manifest("hello-env")
    rc, out, _ = d.cli("store", "untag", "hello-env")
    assert rc == 0 and out.strip() == "untagged hello-env"
    assert d.cli("inspect", "hello-env")[0] == 1
    assert d.cli("store", "untag", "hello-env")[0] == 1
    assert d.cli("store", "gc")[0] == 0
    assert not d.blob(manifest).exists() and d.blob(d.manifest("hello")).exists()


def test_push_of_a_tagged_blob_that_is_not_a_manifest(d: Damaged) -> None:
    digest = _tag(d, "broken", b"not json")
    rc, _, err = d.cli("push", "broken", "--to", "127.0.0.1:9/x", "--retries", "0")
    assert rc == 5, err
    assert digest in one_line(err) and FSCK_HINT in one_line(err)


def test_damaged_index_stops_assemble_before_any_layer_is_built(d: Damaged) -> None:
    write(d.project / "layers" / "more.yaml",
          "source: {kind: files, dirs: [{path: /more}]}\n")
    write(d.project / "recipes" / "more.yaml", "images:\n  more: {layers: [more]}\n")
    _damage_index(d, "truncated")
    before = d.contents()
    rc, _, err = d.cli("assemble", "more")
    assert rc == 5 and FSCK_HINT in one_line(err)
    assert d.contents() == before
