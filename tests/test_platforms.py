"""Multi-platform images in the store and its outputs: an image name tagged with an
OCI image index (linux/amd64 + linux/arm64) by `Store.tag_platforms`, selected by
platform, kept whole by gc, checked by fsck, shown by inspect, exported as an OCI
layout that skopeo and umoci read, and as a single-platform archive."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from ociforge.errors import OciforgeError, StoreCorruptError
from ociforge.image import PlatformNotInImageError, StoredIndex, host_platform
from ociforge.maintenance import fsck, gc
from ociforge.oci import MT_INDEX, Descriptor
from ociforge.store import Store

from conftest import need_tool, run_cli
from platform_images import NAME, PER_PLATFORM, build_two_platform


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("platforms")
    build_two_platform(base / "proj", base / "store")
    return base / "store"


@pytest.fixture
def store(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "store")
    return tmp_path / "store"


def layer_digests(s: Store, name: str, platform: str | None = None) -> list[str]:
    return [layer.descriptor.digest for layer in s.image(name, platform).layers]


def test_index_lists_both_platforms_amd64_first(store: Path) -> None:
    s = Store(store)
    amd, arm = (s.image(PER_PLATFORM[p]) for p in ("linux/amd64", "linux/arm64"))
    entry = s.tags()[NAME]
    assert entry["mediaType"] == MT_INDEX
    index = s.read_json(entry["digest"])
    assert index["mediaType"] == MT_INDEX
    assert [(m["digest"], m["platform"]) for m in index["manifests"]] == [
        (amd.descriptor.digest, {"architecture": "amd64", "os": "linux"}),
        (arm.descriptor.digest, {"architecture": "arm64", "os": "linux"})]
    assert s.platforms(NAME) == ["linux/amd64", "linux/arm64"]
    # The order the images come in does not change the index.
    again = s.tag_platforms("demo-again", [amd, arm])
    assert again.digest == entry["digest"]
    # The shared layer is one blob on both platforms; the other layer differs.
    amd_layers, arm_layers = layer_digests(s, NAME, "linux/amd64"), \
        layer_digests(s, NAME, "linux/arm64")
    assert amd_layers[0] == arm_layers[0] and amd_layers[1] != arm_layers[1]


def test_image_selects_a_platform_host_by_default(store: Path) -> None:
    s = Store(store)
    arm = s.image(NAME, "linux/arm64")
    assert arm.platform == "linux/arm64" and arm.name == NAME
    assert arm.descriptor == s.image(PER_PLATFORM["linux/arm64"]).descriptor
    assert host_platform() == "linux/amd64"  # this machine, and CI
    assert s.image(NAME).descriptor == s.image(PER_PLATFORM["linux/amd64"]).descriptor
    # The layers read back, verified, through the index.
    with arm.layers[1].uncompressed() as tar:
        assert b"built for arm64" in tar.read()
    with pytest.raises(PlatformNotInImageError) as e:
        s.image(NAME, "linux/s390x")
    assert str(e.value) == ("image 'demo' has no linux/s390x image (it has: linux/amd64, "
                            "linux/arm64); choose one with --platform")
    whole = s.tagged([NAME])[0]
    assert isinstance(whole, StoredIndex)
    distinct = {layer.descriptor.digest: layer.descriptor.size
                for p in PER_PLATFORM for layer in s.image(NAME, p).layers}
    assert len(distinct) == 3 and whole.size == sum(distinct.values())
    assert whole.size < sum(s.image(NAME, p).size for p in PER_PLATFORM)


def test_single_platform_images_stay_as_they_were(store: Path) -> None:
    s = Store(store)
    amd = s.image(PER_PLATFORM["linux/amd64"])
    entry = s.tags()[PER_PLATFORM["linux/amd64"]]
    assert entry["digest"] == amd.descriptor.digest  # a manifest tagged directly
    assert s.platforms(PER_PLATFORM["linux/amd64"]) == ["linux/amd64"]
    assert s.image(PER_PLATFORM["linux/amd64"], "linux/amd64").descriptor == amd.descriptor
    with pytest.raises(PlatformNotInImageError, match=r"\(it has: linux/amd64\)"):
        s.image(PER_PLATFORM["linux/amd64"], "linux/arm64")
    # One platform given: the manifest is tagged itself, no index.
    desc = s.tag_platforms("solo", [amd])
    assert desc == amd.descriptor and s.tags()["solo"]["digest"] == amd.descriptor.digest
    with pytest.raises(Exception, match="two images of one platform"):
        s.tag_platforms("twice", [amd, amd])


def test_gc_keeps_what_only_the_index_references(store: Path) -> None:
    s = Store(store)
    before = set(s.iter_blobs())
    arm_manifest = s.image(NAME, "linux/arm64").descriptor.digest
    for name in PER_PLATFORM.values():
        assert s.untag(name)
    report = gc(s, prune_layers=True)
    assert report.removed_blobs == 0 and set(s.iter_blobs()) == before
    assert s.image(NAME, "linux/arm64").descriptor.digest == arm_manifest
    assert fsck(s).clean
    # Untagging the index leaves its manifests, configs and layers to gc.
    r = run_cli("store", "untag", NAME, "--json", store=store)
    assert r.rc == 0 and r.json() == {"untagged": [NAME]}
    gc(s, prune_layers=True)
    assert not s.has_blob(arm_manifest)
    assert set(s.iter_blobs()) == set()


def test_gc_refuses_and_fsck_reports_a_missing_platform_manifest(store: Path) -> None:
    s = Store(store)
    arm_manifest = s.image(NAME, "linux/arm64").descriptor.digest
    s.untag(PER_PLATFORM["linux/arm64"])
    s.blob_path(arm_manifest).unlink()
    before = set(s.iter_blobs())
    with pytest.raises(StoreCorruptError, match=r"store gc removed nothing: image 'demo'"):
        gc(s)
    assert set(s.iter_blobs()) == before
    report = fsck(s)
    assert report.dangling_tags == [NAME]
    r = run_cli("inspect", NAME, "--platform", "linux/arm64", store=store)
    assert r.rc == 5 and arm_manifest in r.err


def test_gc_refuses_an_index_entry_it_cannot_read_as_a_document(store: Path) -> None:
    """An index listing something that is not a manifest (here: bytes under a media
    type ociforge does not know) is not guessed at: gc removes nothing."""
    s = Store(store)
    odd = b"\x00not a manifest"
    index = s.read_json(s.tags()[NAME]["digest"])
    index["manifests"].append({"mediaType": "application/vnd.example.unknown",
                               "digest": s.put_bytes(odd), "size": len(odd)})
    data = json.dumps(index).encode()
    s.tag("odd", Descriptor(MT_INDEX, s.put_bytes(data), len(data)))
    before = set(s.iter_blobs())
    with pytest.raises(StoreCorruptError, match=r"removed nothing: image 'odd'.*not valid JSON"):
        gc(s, prune_layers=True)
    assert set(s.iter_blobs()) == before


def test_fsck_recovers_a_lost_index_as_one_image(store: Path) -> None:
    """index.json and its last good copy both gone: fsck tags the multi-platform
    image's index again (one recovered tag), not its manifests, which the index names."""
    s = Store(store)
    index_digest = s.tags()[NAME]["digest"]
    for name in PER_PLATFORM.values():
        s.untag(name)
    s.index_path.unlink()
    s.last_good_index.unlink()
    report = fsck(Store(store))
    assert report.index is not None
    recovered = Store(store).tags()
    assert [e["digest"] for e in recovered.values()] == [index_digest]
    (name,) = recovered
    assert Store(store).platforms(name) == ["linux/amd64", "linux/arm64"]


def test_indexes_ociforge_cannot_choose_from_are_refused(store: Path) -> None:
    """Another tool's index: nested, or two manifests of one platform. Reading it is
    an error naming the image; gc still keeps all of it."""
    s = Store(store)
    top = Descriptor.from_json(s.tags()[NAME])
    amd = s.image(NAME, "linux/amd64").descriptor

    def tag_index(name: str, entries: list[dict[str, object]]) -> None:
        data = json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX,
                           "manifests": entries}).encode()
        s.tag(name, Descriptor(MT_INDEX, s.put_bytes(data), len(data)))

    tag_index("nested", [top.to_json()])
    tag_index("twice", [{**amd.to_json(), "platform": {"os": "linux", "architecture": "amd64"}},
                        {**amd.to_json(), "annotations": {"x": "y"}}])
    with pytest.raises(OciforgeError, match="'nested' is an index that lists another index"):
        s.image("nested", "linux/arm64")
    with pytest.raises(OciforgeError, match="'twice' is an index with several manifests of "
                       "one platform"):
        s.image("twice")
    s.untag(NAME)
    before = set(s.iter_blobs())
    assert gc(s, prune_layers=True).removed_blobs == 0 and set(s.iter_blobs()) == before


def test_inspect_shows_the_index_and_a_platform(store: Path) -> None:
    s = Store(store)
    r = run_cli("inspect", NAME, "--json", store=store)
    assert r.rc == 0, r.err
    data = r.json()
    assert data["index_digest"] == s.tags()[NAME]["digest"]
    assert [(p["platform"], p["manifest_digest"]) for p in data["platforms"]] == [
        (p, s.image(PER_PLATFORM[p]).descriptor.digest) for p in PER_PLATFORM]
    assert data["shared_layers"] == 1
    r = run_cli("inspect", NAME, store=store)
    assert r.rc == 0 and "linux/arm64" in r.out and data["index_digest"] in r.out
    r = run_cli("inspect", NAME, "--platform", "linux/arm64", "--json", store=store)
    assert r.rc == 0, r.err
    assert r.json()["platform"] == "linux/arm64"
    assert r.json()["manifest_digest"] == s.image(PER_PLATFORM["linux/arm64"]).descriptor.digest
    assert r.json()["index_digest"] == data["index_digest"]
    r = run_cli("inspect", NAME, "--raw", "index", store=store)
    assert r.rc == 0 and json.loads(r.out)["mediaType"] == MT_INDEX
    r = run_cli("inspect", NAME, "--platform", "linux/riscv64", store=store)
    assert r.rc == 1 and len(r.err.strip().splitlines()) == 1
    assert "has no linux/riscv64 image (it has: linux/amd64, linux/arm64)" in r.err


def test_oci_layout_carries_the_index(store: Path, tmp_path: Path) -> None:
    s = Store(store)
    layout = tmp_path / "layout"
    r = run_cli("export", NAME, "--oci-layout", layout, store=store)
    assert r.rc == 0, r.err
    (top,) = json.loads((layout / "index.json").read_text())["manifests"]
    assert top["annotations"]["io.containerd.image.name"] == "docker.io/library/demo:latest"
    assert top["mediaType"] == MT_INDEX and top["digest"] == s.tags()[NAME]["digest"]
    # index.json -> image index -> both manifests -> their blobs, all copied.
    for platform in PER_PLATFORM:
        img = s.image(NAME, platform)
        for desc in [img.descriptor, *img.blobs()]:
            assert (layout / "blobs" / "sha256" / desc.digest[7:]).read_bytes() == \
                s.read_bytes(desc.digest)
    need_tool("skopeo")
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{layout}:latest"],
                         capture_output=True, timeout=60)
    assert raw.returncode == 0, raw.stderr
    assert raw.stdout == s.read_bytes(top["digest"])
    for platform in PER_PLATFORM:
        p = subprocess.run(["skopeo", "inspect", "--override-os", "linux", "--override-arch",
                            platform.split("/")[1], f"oci:{layout}:latest"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        info = json.loads(p.stdout)
        assert info["Digest"] == top["digest"]  # skopeo names the tag's digest
        assert info["Architecture"] == platform.split("/")[1]
        assert info["Layers"] == layer_digests(s, NAME, platform)
    # umoci (0.4) lists the tag; it does not choose a platform of an index (its `stat`
    # and `unpack` call a tag with two manifests ambiguous), so that stops there.
    need_tool("umoci")
    p = subprocess.run(["umoci", "ls", "--layout", str(layout)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.split() == ["latest"], p.stderr


def test_archive_holds_one_platform(store: Path, tmp_path: Path) -> None:
    s = Store(store)
    for platform, expect in ((None, "linux/amd64"), ("linux/arm64", "linux/arm64")):
        archive = tmp_path / f"{expect.replace('/', '-')}.tar"
        r = run_cli("export", NAME, "--archive", archive, "--json",
                    *(["--platform", platform] if platform else []), store=store)
        assert r.rc == 0, r.err
        assert r.json()["archive"]["platforms"] == {NAME: expect}
        with tarfile.open(archive) as tar:
            (entry,) = json.loads(tar.extractfile("index.json").read())["manifests"]  # type: ignore[union-attr]
            (docker,) = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
            names = set(tar.getnames())
        img = s.image(NAME, expect)
        assert entry["digest"] == img.descriptor.digest
        assert docker["RepoTags"] == ["demo:latest"]
        assert docker["Config"] == f"blobs/sha256/{img.config_descriptor.digest[7:]}"
        other = s.image(NAME, "linux/arm64" if expect == "linux/amd64" else "linux/amd64")
        assert f"blobs/sha256/{other.descriptor.digest[7:]}" not in names
    r = run_cli("export", NAME, "--archive", tmp_path / "x.tar", "--platform", "linux/s390x",
                store=store)
    assert r.rc == 1 and len(r.err.strip().splitlines()) == 1
    assert "has no linux/s390x image (it has: linux/amd64, linux/arm64)" in r.err
    assert not (tmp_path / "x.tar").exists()


def test_catalog_lists_platforms_and_registry_bytes(built: Path, store: Path,
                                                    tmp_path: Path) -> None:
    from ociforge.catalog import registry_bytes

    s = Store(store)
    index_size = s.tags()[NAME]["size"]
    whole = s.tagged([NAME])
    amd, arm = (s.images([NAME], p) for p in PER_PLATFORM)
    both = registry_bytes(whole)
    # Everything of both platforms, the shared layer paid for once, plus the index.
    shared = s.image(NAME).layers[0].descriptor.size
    assert both == registry_bytes(amd) + registry_bytes(arm) - shared + index_size
    assert registry_bytes([*amd, *arm]) == both - index_size

    out = tmp_path / "images.md"
    r = run_cli("catalog", "-o", out, store=store, project=built.parent / "proj")
    assert r.rc == 0, r.err
    text = out.read_text()
    rows = {line.split("|")[1].strip(): line.split("|")[3].strip()
            for line in text.splitlines() if line.startswith("| `demo")}
    assert rows == {"`demo`": "linux/amd64, linux/arm64", "`demo-amd64`": "linux/amd64",
                    "`demo-arm64`": "linux/arm64"}
    platforms = text.split("## Platforms")[1].split("\n## ")[0]
    everything = registry_bytes(s.tagged(["demo", *PER_PLATFORM.values()]))
    assert f"| linux/amd64 + linux/arm64 (multi-platform) | {everything / 1e6:,.1f} MB |" \
        in platforms
    # The arm64-only layer is in the layers table, marked as the other platform's.
    arm_only = s.image(NAME, "linux/arm64").layers[1].descriptor.digest
    (line,) = [x for x in text.splitlines() if arm_only[:19] in x]
    assert "demo (linux/arm64)" in line and "demo-arm64" in line


def test_sbom_of_each_platform(store: Path, tmp_path: Path) -> None:
    s = Store(store)
    for platform in PER_PLATFORM:
        out = tmp_path / f"{platform[6:]}.spdx.json"
        r = run_cli("sbom", NAME, "--platform", platform, "-o", out, "--json", store=store)
        assert r.rc == 0, r.err
        assert r.json()["manifest_digest"] == s.image(NAME, platform).descriptor.digest
        files = {f["fileName"] for f in json.loads(out.read_text()).get("files", [])}
        assert files == {"./data/shared.txt", f"./data/{platform[6:]}.txt"}


def test_session_export_archive_platform_and_layout_index(built: Path, store: Path,
                                                          tmp_path: Path) -> None:
    """`BuildSession.export` (what `assemble --archive/--oci-layout` calls): the archive
    one platform (`platform`, the host's by default), the layout the whole index."""
    from ociforge.recipes import Project
    from ociforge.session import BuildSession, SessionOptions

    s = Store(store)
    session = BuildSession(s, Project.load(built.parent / "proj"), SessionOptions(sde=0))
    out = session.export([NAME], archive=tmp_path / "arm.tar", oci_layout=tmp_path / "l",
                         platform="linux/arm64")
    assert set(out) == {"archive", "oci_layout"}
    with tarfile.open(tmp_path / "arm.tar") as tar:
        (entry,) = json.loads(tar.extractfile("index.json").read())["manifests"]  # type: ignore[union-attr]
    assert entry["digest"] == s.image(NAME, "linux/arm64").descriptor.digest
    (top,) = json.loads((tmp_path / "l" / "index.json").read_text())["manifests"]
    assert top["digest"] == s.tags()[NAME]["digest"]
    with pytest.raises(PlatformNotInImageError):
        session.export([NAME], archive=tmp_path / "x.tar", platform="linux/ppc64le")
    assert not (tmp_path / "x.tar").exists()


def test_images_ls_shows_declared_and_stored_platforms(built: Path, store: Path) -> None:
    project = built.parent / "proj"
    r = run_cli("images", "ls", "--json", store=store, project=project)
    assert r.rc == 0, r.err
    rows = {d["name"]: d for d in r.json()}
    # `demo` is declared for linux/amd64; the store holds the two-platform index.
    assert rows[NAME]["platforms"] == ["linux/amd64"]
    assert rows[NAME]["assembled_platforms"] == ["linux/amd64", "linux/arm64"]
    assert rows["demo-arm64"]["platforms"] == rows["demo-arm64"]["assembled_platforms"] == [
        "linux/arm64"]
    text = run_cli("images", "ls", store=store, project=project).out.splitlines()
    line = next(x for x in text if x.startswith(f"{NAME} "))
    assert " amd64 (store: amd64,arm64) " in line
    assert " arm64 " in next(x for x in text if x.startswith("demo-arm64 "))
    # Not assembled: its declared platforms, no store column.
    r = run_cli("images", "ls", "--json", store=store.parent / "empty", project=project)
    assert {d["assembled_platforms"] for d in r.json()} == {None}
