"""A multi-platform image (linux/amd64 + linux/arm64, one layer shared) pushed to a
real registry (Debian's docker-registry on 127.0.0.1, behind the counting proxy) and
read back by independent clients: skopeo, crane, containerd's `ctr --platform`, and
`ociforge pull --platform`; and published by stitching from a layer cache."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociforge.image import host_platform
from ociforge.oci import MT_INDEX
from ociforge.store import Store

from conftest import TEST_CACHE, Result, need_tool, run_cli
from containerd import Containerd, can_run_containers
from fault_proxy import FaultProxy
from platform_images import NAME, PER_PLATFORM, build_two_platform, two_platform_project
from registry_server import Registry

pytestmark = pytest.mark.slow

CRANE = TEST_CACHE / "go" / "bin" / "crane"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("platforms")
    build_two_platform(base / "proj", base / "store")
    return base / "store"


@pytest.fixture
def store(built: Path, tmp_path: Path) -> Path:
    shutil.copytree(built, tmp_path / "store")
    return tmp_path / "store"


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    p = FaultProxy(registry.port).start()
    yield p
    p.stop()


def push(store: Path, *args: str) -> Result:
    r = run_cli("push", *args, "--json", store=store)
    assert r.rc == 0, r.err
    return r


def skopeo_raw(ref: str) -> bytes:
    need_tool("skopeo")
    p = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def distinct_blobs(s: Store) -> dict[str, int]:
    """Config and layer blobs of both platforms, each once."""
    return {d.digest: d.size for p in PER_PLATFORM for d in s.image(NAME, p).blobs()}


def test_push_sends_shared_layers_once_and_the_index_as_the_tag(
        registry: Registry, proxy: FaultProxy, store: Path, tmp_path: Path) -> None:
    s = Store(store)
    index_digest = s.tags()[NAME]["digest"]
    manifests = {p: s.image(NAME, p).descriptor.digest for p in PER_PLATFORM}
    blobs = distinct_blobs(s)
    assert len(blobs) == 5  # two configs, the shared layer, one layer per platform
    ref = f"{proxy.host}/plat/demo"
    report = push(store, NAME, "--to", f"{ref}:v1").json()
    assert report["images"] == [{"name": NAME, "repository": ref, "tags": ["v1"],
                                 "digest": index_digest, "manifest": "pushed",
                                 "platforms": manifests}]
    assert report["blobs"] == {"pushed": 5, "present": 0, "mounted": 0}
    assert report["bytes_sent"] == sum(blobs.values())
    # Each blob was uploaded once, the shared layer too (counted outside the client).
    uploads = [d for d in proxy.digest_of_upload.values() if d in blobs]
    assert sorted(uploads) == sorted(blobs)
    # One SBOM per platform manifest, the index has none.
    assert [(a["platform"], a["subject"]) for a in report["attached"]] == list(
        manifests.items())
    assert all("skipped" not in a for a in report["attached"]), report["attached"]

    # Read straight from the registry (the proxy keeps one of skopeo's Accept headers).
    direct = f"{registry.host}/plat/demo"
    raw = skopeo_raw(f"{direct}:v1")
    assert raw == s.read_bytes(index_digest)
    index = json.loads(raw)
    assert index["mediaType"] == MT_INDEX
    assert [(m["digest"], f"{m['platform']['os']}/{m['platform']['architecture']}")
            for m in index["manifests"]] == [(d, p) for p, d in manifests.items()]
    for digest in manifests.values():
        assert skopeo_raw(f"{direct}@{digest}") == s.read_bytes(digest)

    # The SBOMs are found by the referrers tag of each platform manifest.
    p = subprocess.run(["skopeo", "list-tags", "--tls-verify=false", f"docker://{direct}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert sorted(json.loads(p.stdout)["Tags"]) == sorted(
        ["v1", *("sha256-" + d[7:] for d in manifests.values())])
    # A re-push sends nothing.
    again = push(store, NAME, "--to", f"{ref}:v1").json()
    assert again["images"][0]["manifest"] == "present" and again["bytes_sent"] == 0

    # `ociforge pull --platform` picks each platform's manifest out of the index.
    for platform, digest in manifests.items():
        r = run_cli("pull", f"{ref}:v1", "--platform", platform, "--name", "got", "--json",
                    store=tmp_path / "pulled")
        assert r.rc == 0, r.err
        assert r.json()["digest"] == digest and r.json()["platform"] == platform
    # Without --platform: this machine's (linux/amd64 here and in CI).
    r = run_cli("pull", f"{ref}:v1", "--name", "host", "--json", store=tmp_path / "pulled")
    assert r.rc == 0, r.err
    assert r.json()["platform"] == host_platform() == "linux/amd64"
    assert r.json()["digest"] == manifests[host_platform()]


def test_crane_reads_the_index_and_each_platform(registry: Registry, store: Path) -> None:
    if not CRANE.exists():
        pytest.fail(f"{CRANE} is missing: run scripts/build-go-tools.sh")
    s = Store(store)
    ref = f"{registry.host}/plat/crane:v1"
    push(store, NAME, "--to", ref)

    def crane(*args: str) -> bytes:
        p = subprocess.run([str(CRANE), *args, "--insecure"], capture_output=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr
        return p.stdout

    assert crane("manifest", ref) == s.read_bytes(s.tags()[NAME]["digest"])
    for platform in PER_PLATFORM:
        assert crane("manifest", "--platform", platform, ref) == \
            s.read_bytes(s.image(NAME, platform).descriptor.digest)
        assert crane("digest", "--platform", platform, ref).decode().strip() == \
            s.image(NAME, platform).descriptor.digest


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    reason = can_run_containers()
    if reason:
        pytest.skip(reason)
    ctd = Containerd(Path(tempfile.mkdtemp(prefix="ocf-plat-ctd-", dir="/tmp"))).start()
    yield ctd
    ctd.stop()


def test_containerd_pulls_the_arm64_manifest(registry: Registry, store: Path,
                                             containerd: Containerd) -> None:
    s = Store(store)
    ref = f"{registry.host}/plat/ctd:v1"
    push(store, NAME, "--to", ref)
    p = containerd.ctr("images", "pull", "--platform", "linux/arm64", "--plain-http", ref)
    assert p.returncode == 0, p.stderr
    content = containerd.ctr("content", "ls", "-q")
    assert content.returncode == 0, content.stderr
    have = set(content.stdout.split())
    arm, amd = (s.image(NAME, p) for p in ("linux/arm64", "linux/amd64"))
    assert s.tags()[NAME]["digest"] in have
    assert {arm.descriptor.digest, *(d.digest for d in arm.blobs())} <= have
    assert amd.descriptor.digest not in have and amd.layers[1].descriptor.digest not in have
    images = containerd.ctr("images", "ls")
    assert ref in images.stdout and s.tags()[NAME]["digest"] in images.stdout


def test_publish_by_stitching_from_the_layer_cache(registry: Registry, proxy: FaultProxy,
                                                   tmp_path: Path) -> None:
    """CI: runners build the layers into the cache; the publisher assembles both
    platforms' manifests from the cache, tags the index and pushes it: every layer
    is mounted from the cache repository, none is downloaded or uploaded."""
    project = two_platform_project(tmp_path / "proj")
    cache = ["--cache", f"{proxy.host}/ci/cache"]
    r = run_cli(*cache, "layers", "build", "shared", "only-amd64", "only-arm64",
                store=tmp_path / "runner", project=project)
    assert r.rc == 0, r.err
    layers = {b["digest"] for p in (tmp_path / "runner" / "ociforge" / "layers").glob("*.json")
              for b in json.loads(p.read_text())["blobs"].values()}
    pub = tmp_path / "publisher"
    r = run_cli(*cache, "assemble", *PER_PLATFORM.values(), store=pub, project=project,
                env={"OCIFORGE_PLATFORMS": ",".join(PER_PLATFORM)})
    assert r.rc == 0, r.err
    s = Store(pub)
    s.tag_platforms(NAME, [s.image(n) for n in PER_PLATFORM.values()])
    proxy.log.clear()
    uploads_before = set(proxy.digest_of_upload.values())
    r = run_cli(*cache, "push", NAME, "--to", f"{proxy.host}/ci/published:v1", "--json",
                store=pub, project=project)
    assert r.rc == 0, r.err
    report = r.json()
    assert report["blobs"] == {"pushed": 2, "present": 0, "mounted": 3}  # configs; layers
    assert not [e for e in proxy.log if e.method == "GET" and "/blobs/sha256:" in e.path
                and e.path.rsplit("/", 1)[-1] in layers], "a layer blob was downloaded"
    assert not (set(proxy.digest_of_upload.values()) - uploads_before) & layers
    assert not {"sha256:" + p.name for p in (pub / "blobs" / "sha256").iterdir()} & layers
    assert skopeo_raw(f"{registry.host}/ci/published:v1") == \
        s.read_bytes(s.tags()[NAME]["digest"])
