"""Push and pull against a real registry (Debian's docker-registry) on 127.0.0.1,
read back by independent clients: skopeo, oras-py and containerd."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ociforge.store import MT_DOCKER_MANIFEST, MT_INDEX, Descriptor, Store

from conftest import Result, need_tool, run_cli
from containerd import Containerd, can_run_containers
from registry_images import assemble, blob_sizes, hello_with_variant, manifest_digest
from registry_server import Registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("images")
    project = hello_with_variant(base / "proj")
    assemble(project, base / "store", "hello", "hello-extra")
    return base / "store"


@pytest.fixture
def store(built: Path, tmp_path: Path) -> Path:
    """A private copy: the store remembers where blobs were pushed (for mounts)."""
    shutil.copytree(built, tmp_path / "store")
    return tmp_path / "store"


def push(store: Path, *args: str) -> Result:
    r = run_cli("push", *args, "--json", store=store)
    assert r.rc == 0, r.err
    return r


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    need_tool("skopeo")
    p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p


def new_requests(registry: Registry, before: int) -> list[tuple[str, str, int]]:
    return registry.access_log()[before:]


def test_push_is_read_back_by_skopeo_and_oras(registry: Registry, store: Path,
                                              tmp_path: Path) -> None:
    digest = manifest_digest(store, "hello")
    report = push(store, "hello", "--to", f"{registry.host}/e2e/hello:v1",
                  "--tag", "stable").json()
    assert report["images"] == [{"name": "hello", "repository": f"{registry.host}/e2e/hello",
                                 "tags": ["v1", "stable"], "digest": digest,
                                 "manifest": "pushed"}]
    assert report["blobs"] == {"pushed": 3, "present": 0, "mounted": 0}
    assert report["bytes_sent"] == sum(blob_sizes(store, "hello").values())

    info = json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{registry.host}/e2e/hello:v1").stdout)
    assert info["Digest"] == digest
    # And the tag listing the image's referrers: the SBOM push attaches (test_sbom.py).
    assert set(info["RepoTags"]) == {"v1", "stable", "sha256-" + digest[7:]}
    assert info["Labels"] == {"org.opencontainers.image.title": "hello"}
    skopeo("copy", "-q", "--src-tls-verify=false",
           f"docker://{registry.host}/e2e/hello:stable", f"oci:{tmp_path / 'layout'}:x")
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest

    import oras.client

    oras = oras.client.OrasClient(hostname=registry.host, insecure=True)
    manifest = oras.get_manifest(f"{registry.host}/e2e/hello:v1")
    assert manifest == json.loads((store / "blobs" / "sha256" / digest[7:]).read_bytes())
    for desc in [manifest["config"], *manifest["layers"]]:
        resp = oras.get_blob(f"{registry.host}/e2e/hello:v1", desc["digest"])
        assert resp.status_code == 200
        assert "sha256:" + hashlib.sha256(resp.content).hexdigest() == desc["digest"]


def test_repush_sends_nothing_and_new_repository_mounts(registry: Registry,
                                                        store: Path) -> None:
    push(store, "hello", "--to", f"{registry.host}/e2e/again:v1")
    before = len(registry.access_log())
    report = push(store, "hello", "--to", f"{registry.host}/e2e/again:v1").json()
    assert report["images"][0]["manifest"] == "present"
    assert report["blobs"] == {"pushed": 0, "present": 3, "mounted": 0}
    assert report["bytes_sent"] == 0
    methods = {(m, s) for m, _, s in new_requests(registry, before)}
    assert methods <= {("GET", 200), ("HEAD", 200)}, methods  # the ping and one HEAD

    before = len(registry.access_log())
    report = push(store, "hello", "--to", f"{registry.host}/e2e/mounted:v1").json()
    assert report["blobs"] == {"pushed": 0, "present": 0, "mounted": 3}
    assert report["bytes_sent"] == 0
    log = new_requests(registry, before)
    mounts = [p for m, p, s in log if m == "POST" and "mount=" in p and s == 201]
    assert len(mounts) == 3 + 2  # and the SBOM's two blobs (empty config, document)
    assert not [p for m, p, _ in log if m in ("PATCH", "PUT") and "/blobs/uploads/" in p]
    info = json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{registry.host}/e2e/mounted:v1").stdout)
    assert info["Digest"] == manifest_digest(store, "hello")


def test_variant_sends_only_its_new_layers(registry: Registry, store: Path) -> None:
    push(store, "hello", "--to", f"{registry.host}/e2e/variants")
    report = push(store, "hello-extra", "--to", f"{registry.host}/e2e/variants").json()
    old, new = blob_sizes(store, "hello"), blob_sizes(store, "hello-extra")
    fresh = {d: s for d, s in new.items() if d not in old}
    assert len(fresh) == 2  # its config and the extra layer
    assert report["blobs"] == {"pushed": 2, "present": 2, "mounted": 0}
    assert report["bytes_sent"] == sum(fresh.values())


def test_several_images_and_all(registry: Registry, store: Path) -> None:
    report = push(store, "hello", "hello-extra", "--to", f"{registry.host}/e2e/multi").json()
    assert [(i["name"], i["tags"]) for i in report["images"]] == [
        ("hello", ["hello"]), ("hello-extra", ["hello-extra"])]
    # Shared layers are sent once.
    assert report["blobs"]["pushed"] == len(blob_sizes(store, "hello") | blob_sizes(
        store, "hello-extra"))
    tags = json.loads(skopeo("list-tags", "--tls-verify=false",
                             f"docker://{registry.host}/e2e/multi").stdout)["Tags"]
    assert sorted(tags) == sorted(["hello", "hello-extra",  # and their SBOMs' referrers tags
                                   *("sha256-" + i["digest"][7:] for i in report["images"])])
    report = push(store, "--all", "--to", f"{registry.host}/e2e/everything").json()
    assert sorted(i["name"] for i in report["images"]) == ["hello", "hello-extra"]
    assert report["blobs"]["pushed"] == 0  # all mounted from e2e/multi
    r = run_cli("push", "hello", "hello-extra", "--to", f"{registry.host}/e2e/x:tag",
                store=store)
    assert r.rc == 2 and "REGISTRY/REPO only" in r.err
    r = run_cli("push", "nosuch", "--to", f"{registry.host}/e2e/x", store=store)
    assert r.rc == 1 and "not in the store" in r.err


def test_pull_into_a_store(registry: Registry, store: Path, tmp_path: Path) -> None:
    digest = manifest_digest(store, "hello")
    push(store, "hello", "--to", f"{registry.host}/e2e/pull:v1")
    other = tmp_path / "other"
    r = run_cli("pull", f"{registry.host}/e2e/pull:v1", "--name", "copied", "--json",
                store=other)
    assert r.rc == 0, r.err
    assert r.json()["digest"] == digest and r.json()["blobs"]["fetched"] == 3
    r = run_cli("inspect", "copied", "--json", store=other)
    assert r.rc == 0 and r.json()["manifest_digest"] == digest
    for blob in blob_sizes(store, "hello"):
        assert (other / "blobs" / "sha256" / blob[7:]).read_bytes() == \
            (store / "blobs" / "sha256" / blob[7:]).read_bytes()
    assert run_cli("store", "fsck", store=other).rc == 0
    # Again, by digest: nothing to fetch; the default name is the repository@digest.
    r = run_cli("pull", f"{registry.host}/e2e/pull@{digest}", "--json", store=other)
    assert r.rc == 0 and r.json()["blobs"] == {"fetched": 0, "present": 3}
    r = run_cli("pull", f"{registry.host}/e2e/nothing:here", store=other)
    assert r.rc == 6 and "not found" in r.err and len(r.err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    reason = can_run_containers()
    if reason:
        pytest.skip(reason)
    ctd = Containerd(Path(tempfile.mkdtemp(prefix="ocf-reg-ctd-", dir="/tmp"))).start()
    yield ctd
    ctd.stop()


def test_containerd_pulls_and_runs(registry: Registry, store: Path,
                                   containerd: Containerd) -> None:
    push(store, "hello", "--to", f"{registry.host}/e2e/ctd:v1")
    ref = f"{registry.host}/e2e/ctd:v1"
    p = containerd.ctr("images", "pull", "--plain-http", ref)
    assert p.returncode == 0, p.stderr
    run = containerd.ctr("run", "--rm", ref, "ocf-reg-hello")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hello from ociforge as 185"


def _store_docker_and_index(store: Path) -> tuple[str, str]:
    """Tag two more images in the store: `hello-docker`, the hello image as a Docker
    schema 2 manifest, and `hello-index`, an OCI index of hello (amd64) and
    hello-extra (arm64). Returns their digests."""
    s = Store(store)
    tags = s.tags()
    hello = s.read_json(tags["hello"]["digest"])
    docker = {
        "schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
        "config": {**hello["config"],
                   "mediaType": "application/vnd.docker.container.image.v1+json"},
        "layers": [{**d, "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip"}
                   for d in hello["layers"]],
    }
    # Written with indentation, as other tools do: the bytes must be pushed as they are.
    data = json.dumps(docker, indent=3).encode()
    docker_digest = s.put_bytes(data)
    s.tag("hello-docker", Descriptor(MT_DOCKER_MANIFEST, docker_digest, len(data)))
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [
        {**{k: tags[n][k] for k in ("mediaType", "digest", "size")},
         "platform": {"os": "linux", "architecture": arch}}
        for n, arch in (("hello", "amd64"), ("hello-extra", "arm64"))]}
    data = json.dumps(index).encode()
    index_digest = s.put_bytes(data)
    s.tag("hello-index", Descriptor(MT_INDEX, index_digest, len(data)))
    return docker_digest, index_digest


def test_docker_schema2_and_oci_index(registry: Registry, store: Path, tmp_path: Path) -> None:
    docker_digest, index_digest = _store_docker_and_index(store)
    report = push(store, "hello-docker", "hello-index", "--to",
                  f"{registry.host}/e2e/types").json()
    assert [i["digest"] for i in report["images"]] == [docker_digest, index_digest]
    raw = skopeo("inspect", "--raw", "--tls-verify=false",
                 f"docker://{registry.host}/e2e/types:hello-docker").stdout
    assert raw.encode() == (store / "blobs" / "sha256" / docker_digest[7:]).read_bytes()
    info = json.loads(skopeo("inspect", "--tls-verify=false",
                             f"docker://{registry.host}/e2e/types:hello-docker").stdout)
    assert info["Digest"] == docker_digest
    # The index, byte for byte, and its children by digest.
    children = [manifest_digest(store, n) for n in ("hello", "hello-extra")]
    refs = {":hello-index": index_digest, **{f"@{d}": d for d in children}}
    for ref, digest in refs.items():
        raw = skopeo("inspect", "--raw", "--tls-verify=false",
                     f"docker://{registry.host}/e2e/types{ref}").stdout
        assert raw.encode() == (store / "blobs" / "sha256" / digest[7:]).read_bytes()
    # Pulling the index picks one platform's manifest.
    r = run_cli("pull", f"{registry.host}/e2e/types:hello-index", "--platform",
                "linux/arm64", "--json", store=tmp_path / "p")
    assert r.rc == 0, r.err
    assert r.json()["digest"] == manifest_digest(store, "hello-extra")
    assert r.json()["platform"] == "linux/arm64"
    r = run_cli("pull", f"{registry.host}/e2e/types:hello-index", "--platform",
                "linux/s390x", store=tmp_path / "p")
    assert r.rc == 1 and "linux/amd64, linux/arm64" in r.err


def test_plain_http_only_for_loopback(registry: Registry,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The same registry, made to look remote: HTTPS is required unless --insecure."""
    from ociforge.registry import RegistryError, client

    monkeypatch.setattr(client, "is_loopback", lambda host: False)
    before = len(registry.access_log())
    with pytest.raises(RegistryError, match="TLS handshake"):
        client.RegistryClient(registry.host).ping()
    assert len(registry.access_log()) == before  # nothing was sent in the clear
    insecure = client.RegistryClient(registry.host, insecure=True)
    insecure.ping()
    assert insecure.base == f"http://{registry.host}"
