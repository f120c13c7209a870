"""The registry as a shared layer cache (`--cache`), against Debian's docker-registry
behind a counting proxy on loopback: a fleet of runners with empty stores builds each
layer once, a fifth runner publishes every image by stitching (no layer blob down or
up), racing runners agree, a corrupt entry is rebuilt, read mode never writes."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TEST_CACHE, make_hello_project, run_cli
from containerd import Containerd, can_run_containers
from fault_proxy import FaultProxy
from registry_images import fleet_project, one_layer_project
from registry_server import Registry, free_port, stop_process

pytestmark = pytest.mark.slow

WRITES = ("PUT", "POST", "PATCH")


@pytest.fixture
def proxy(registry: Registry) -> Iterator[FaultProxy]:
    p = FaultProxy(registry.port).start()
    yield p
    p.stop()


def cached(proxy: FaultProxy, repo: str, *args: str | Path, store: Path, project: Path,
           mode: str = "readwrite") -> tuple[int, str, str]:
    r = run_cli("--cache", f"{proxy.host}/{repo}", "--cache-mode", mode, *args,
                store=store, project=project)
    return r.rc, r.out, r.err


def cli_cmd(proxy: FaultProxy, repo: str, store: Path, project: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "ociforge.cli", "--store", str(store), "--project",
            str(project), "--cache", f"{proxy.host}/{repo}", *args]


def layer_digests(store: Path) -> set[str]:
    """Every layer blob digest the store's records name (local or noted remote)."""
    out = set()
    for path in (store / "ociforge" / "layers").glob("*.json"):
        out |= {b["digest"] for b in json.loads(path.read_text())["blobs"].values()}
    return out


def blob_gets(proxy: FaultProxy, digests: set[str]) -> int:
    return sum(1 for e in proxy.log if e.method == "GET" and "/blobs/sha256:" in e.path
               and e.path.rsplit("/", 1)[-1] in digests)


def uploaded(proxy: FaultProxy, digests: set[str]) -> set[str]:
    return set(proxy.digest_of_upload.values()) & digests


def cache_tags(proxy: FaultProxy, repo: str) -> list[str]:
    with urllib.request.urlopen(f"http://{proxy.host}/v2/{repo}/tags/list") as resp:
        return [t for t in json.load(resp)["tags"] or [] if t.startswith("layer-")]


def fsck_clean(store: Path) -> None:
    r = run_cli("store", "fsck", "--no-repair", "--json", store=store)
    assert r.rc == 0, r.err
    report = r.json()
    assert not report["corrupt"] and not report["dropped_records"], report
    assert not report["dangling_tags"], report


def test_fleet_builds_each_layer_once_and_publish_stitches(proxy: FaultProxy,
                                                           tmp_path: Path) -> None:
    project = fleet_project(tmp_path / "proj")
    make_hello_project(project)  # + `hello` (busybox, hello): a sample that runs
    r = run_cli("plan", "--all", "--jobs", "4", "--json", store=tmp_path / "planner",
                project=project)
    assert r.rc == 0, r.err
    jobs = [j["layers"] for j in r.json()["jobs"]]
    all_layers = {ln for j in jobs for ln in j}
    assert len(jobs) == 4 and len(all_layers) == 11
    # Four runners at once, each its own empty store, one cache repository.
    procs = [subprocess.Popen(cli_cmd(proxy, "ci/cache", tmp_path / f"runner{i}", project,
                                      "layers", "build", *layers, "--json"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, layers in enumerate(jobs)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    built = [d["name"] for out, _ in outs for d in json.loads(out) if d["built"]]
    assert sorted(built) == sorted(all_layers), "a layer was built twice, or not at all"
    assert len(cache_tags(proxy, "ci/cache")) == 11
    # A second fleet (the next commit, nothing changed): every layer from the cache.
    again = run_cli("--cache", f"{proxy.host}/ci/cache", "layers", "build", *sorted(all_layers),
                    "--json", store=tmp_path / "again", project=project)
    assert again.rc == 0, again.err
    assert not [d for d in again.json() if d["built"]]
    assert all(d["remote"] for d in again.json())

    # The publisher: an empty store, a warm cache. Nothing built, no layer blob moved.
    layers = set().union(*(layer_digests(tmp_path / f"runner{i}") for i in range(4)))
    proxy.log.clear()
    before = set(proxy.digest_of_upload.values())
    pub = tmp_path / "publisher"
    r = run_cli("--cache", f"{proxy.host}/ci/cache", "push", "--all", "--to",
                f"{proxy.host}/ci/published", "--json", store=pub, project=project)
    assert r.rc == 0, r.err
    report = r.json()
    assert len(report["images"]) == 6
    assert report["blobs"]["pushed"] == 6  # the six configs; every layer was mounted
    assert report["blobs"]["mounted"] == 11
    assert blob_gets(proxy, layers) == 0, "the publisher downloaded a layer blob"
    assert not uploaded(proxy, layers) - before, "the publisher uploaded a layer blob"
    assert not {"sha256:" + p.name for p in (pub / "blobs" / "sha256").iterdir()} & layers
    attached = {a["name"]: a for a in report["attached"]}
    assert all("skipped" not in a for a in attached.values()), attached
    # Round trips: one /v2/ ping for the cache's client and the push's; one tags/list
    # says the repository is new, so no manifest is asked about; a layer held by the
    # cache is mounted with no HEAD before (the mount answers); the SBOMs' empty config
    # goes up once.
    target = "/v2/ci/published/"
    assert proxy.count("GET", r"^/v2/$") == 1
    assert proxy.count("GET", rf"^{target}tags/list") == 1
    assert proxy.count("HEAD", rf"^{target}manifests/") == 0
    assert not [e for e in proxy.log if e.method == "HEAD" and e.path.startswith(target)
                and e.path.rsplit("/", 1)[-1] in layers]
    assert proxy.count("POST", rf"^{target}blobs/uploads/\?mount=", 201) == 11
    empty = hashlib.sha256(b"{}").hexdigest()
    assert proxy.count("PUT", rf"^{target}blobs/uploads/.*digest=sha256%3A{empty}") == 1
    fsck_clean(pub)
    # Published again, unchanged: the tags answer for the images, the referrers tags
    # for the SBOMs; no blob is asked about, nothing is written.
    proxy.log.clear()
    r = run_cli("--cache", f"{proxy.host}/ci/cache", "push", "--all", "--to",
                f"{proxy.host}/ci/published", "--json", store=pub, project=project)
    assert r.rc == 0, r.err
    assert {i["manifest"] for i in r.json()["images"]} == {"present"}
    assert {a["state"] for a in r.json()["attached"]} == {"present"}
    assert proxy.count("HEAD", rf"^{target}blobs/") == 0
    assert sum(proxy.count(m) for m in WRITES) == 0

    # A pulled image checks out: digests verified by the pull, the files are the project's.
    dest = tmp_path / "pulled"
    r = run_cli("pull", f"{proxy.host}/ci/published:img-a", "--name", "img-a", "--json",
                store=dest)
    assert r.rc == 0, r.err
    fsck_clean(dest)
    manifest = json.loads((dest / "blobs" / "sha256" /
                           r.json()["digest"].split(":")[1]).read_text())
    found = {}
    for layer in manifest["layers"]:
        with tarfile.open(dest / "blobs" / "sha256" / layer["digest"].split(":")[1]) as tar:
            for m in tar.getmembers():
                if m.isfile():
                    found[m.name] = tar.extractfile(m).read()  # type: ignore[union-attr]
    for name in ("base-0", "base-1", "a-0", "a-1"):
        assert found[f"data/{name}.bin"] == (project / "files" / f"{name}.bin").read_bytes()
    # The same manifest as a runner that builds the image itself.
    r = run_cli("assemble", "img-a", "--json", store=tmp_path / "local", project=project)
    assert r.rc == 0, r.err
    assert r.json()["images"][0]["manifest_digest"] == manifest_digest_of(dest, "img-a")

    # A published image runs: containerd pulls it from the registry and runs it.
    reason = can_run_containers()
    if reason:
        pytest.skip(f"all of the above passed; the published image was not run: {reason}")
    ctd = Containerd(Path(tempfile.mkdtemp(prefix="ocf-fleet-ctd-", dir="/tmp"))).start()
    try:
        ref = f"{proxy.host}/ci/published:hello"
        p = ctd.ctr("images", "pull", "--plain-http", ref)
        assert p.returncode == 0, p.stderr
        run = ctd.ctr("run", "--rm", ref, "ocf-fleet-hello")
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == "hello from ociforge as 185"
    finally:
        ctd.stop()


def manifest_digest_of(store: Path, name: str) -> str:
    index = json.loads((store / "index.json").read_text())
    return next(m["digest"] for m in index["manifests"]
                if m["annotations"]["org.opencontainers.image.ref.name"] == name)


def test_two_runners_racing_on_one_layer(proxy: FaultProxy, tmp_path: Path) -> None:
    project = one_layer_project(tmp_path / "proj", "race", seed=11, kib=2048)
    procs = [subprocess.Popen(cli_cmd(proxy, "race/cache", tmp_path / f"s{i}", project,
                                      "assemble", "race", "--json"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    digests = {json.loads(o)["images"][0]["manifest_digest"] for o, _ in outs}
    assert len(digests) == 1
    assert len(cache_tags(proxy, "race/cache")) == 1
    for i in range(2):
        fsck_clean(tmp_path / f"s{i}")


def test_corrupt_entry_is_rebuilt_with_a_warning(registry: Registry, proxy: FaultProxy,
                                                 tmp_path: Path) -> None:
    project = one_layer_project(tmp_path / "proj", "bad", seed=21)
    one_layer_project(project, "short", seed=22)
    rc, out, err = cached(proxy, "bad/cache", "assemble", "bad", "short", "--json",
                          store=tmp_path / "writer", project=project)
    assert rc == 0, err
    keys = {r["name"]: r["input_key"] for r in json.loads(run_cli(
        "layers", "ls", "--json", store=tmp_path / "writer").out)}
    blobs = {ln: json.loads(out)["images"][i]["layers"][0]["digest"]
             for i, ln in enumerate(["bad", "short"])}
    storage = registry.base / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"

    def data_file(digest: str) -> Path:
        hex_ = digest.split(":")[1]
        return storage / hex_[:2] / hex_ / "data"

    # `bad`: same size, bytes flipped (found when the bytes are fetched);
    # `short`: truncated (found by the lookup, before anything is taken).
    raw = bytearray(data_file(blobs["bad"]).read_bytes())
    raw[100] ^= 0xFF
    data_file(blobs["bad"]).write_bytes(bytes(raw))
    data_file(blobs["short"]).write_bytes(data_file(blobs["short"]).read_bytes()[:-10])

    reader = tmp_path / "reader"
    rc, out, err = cached(proxy, "bad/cache", "assemble", "bad", "short", "--archive",
                          tmp_path / "out.tar", "--json", store=reader, project=project)
    assert rc == 0, err
    assert keys["bad"] in err and "building the layer again" in err
    assert keys["short"] in err and "ignored" in err
    assert sorted(json.loads(out)["layers"]["built"]) == ["bad", "short"]
    # The archive holds the right bytes (its layers re-hash), the store is clean.
    fsck_clean(reader)
    assert json.loads(out)["images"][0]["layers"][0]["digest"] == blobs["bad"]


def test_read_mode_never_writes(proxy: FaultProxy, tmp_path: Path) -> None:
    project = one_layer_project(tmp_path / "proj", "ro", seed=31)
    rc, out, err = cached(proxy, "ro/cache", "assemble", "ro", "--json",
                          store=tmp_path / "s1", project=project, mode="read")
    assert rc == 0, err
    assert json.loads(out)["layers"]["built"] == ["ro"]
    assert sum(proxy.count(m) for m in WRITES) == 0
    # A readwrite runner fills the cache; a read-mode one then takes the layer.
    rc, _, err = cached(proxy, "ro/cache", "assemble", "ro", store=tmp_path / "s2",
                        project=project)
    assert rc == 0, err
    proxy.log.clear()
    rc, out, err = cached(proxy, "ro/cache", "assemble", "ro", "--json",
                          store=tmp_path / "s3", project=project, mode="read")
    assert rc == 0, err
    assert json.loads(out)["layers"]["remote"] == ["ro"]
    assert sum(proxy.count(m) for m in WRITES) == 0
    s3 = tmp_path / "s3"
    (blob,) = layer_digests(s3)
    assert not (s3 / "blobs" / "sha256" / blob.split(":")[1]).exists()  # left in the cache
    # Later, without --cache: the store remembers where the blob is and fetches it
    # when an output needs its bytes; gc keeps the note while a record names the blob.
    r = run_cli("store", "gc", store=s3)
    assert r.rc == 0, r.err
    r = run_cli("assemble", "ro", "--archive", tmp_path / "ro.tar", store=s3, project=project)
    assert r.rc == 0, r.err
    assert (s3 / "blobs" / "sha256" / blob.split(":")[1]).exists()
    assert blob_gets(proxy, {blob}) == 1
    assert sum(proxy.count(m) for m in WRITES) == 0
    fsck_clean(s3)


# -- a registry with the OCI 1.1 referrers API -----------------------------------------
# zot is not served by the Go module proxy these machines reach; go-containerregistry's
# registry with its referrers API on (tools/referrers-registry, built by
# scripts/build-go-tools.sh) is used instead.

GGCR_REGISTRY = TEST_CACHE / "go" / "bin" / "referrers-registry"


@pytest.fixture(scope="module")
def referrers_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not GGCR_REGISTRY.exists():
        pytest.fail(f"{GGCR_REGISTRY} is missing: run scripts/build-go-tools.sh "
                    "(it builds tools/referrers-registry from the Go module proxy)")
    port = free_port()
    log = open(tmp_path_factory.mktemp("ggcr") / "registry.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([str(GGCR_REGISTRY), "-port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    stop_process(proc)
    log.close()


def test_referrers_registry_cache_publish_and_sbom(referrers_registry: str,
                                                   tmp_path: Path) -> None:
    """The fleet's path on a registry with the referrers API: a runner fills the cache,
    an empty store publishes by mounting, and the SBOM is found through the API."""
    host = referrers_registry
    project = fleet_project(tmp_path / "proj")
    r = run_cli("--cache", f"{host}/ci/cache", "layers", "build", "base-0", "base-1", "b-0",
                store=tmp_path / "runner", project=project)
    assert r.rc == 0, r.err
    r = run_cli("--cache", f"{host}/ci/cache", "push", "img-b", "--to", f"{host}/ci/pub",
                "--json", store=tmp_path / "publisher", project=project)
    assert r.rc == 0, r.err
    report = r.json()
    # The config only; the layers are mounted, or present (this registry keeps blobs
    # for all repositories at once).
    blobs = report["blobs"]
    assert blobs["pushed"] == 1 and blobs["mounted"] + blobs["present"] == 3, report
    assert report["bytes_uploaded"] < 4096
    (attached,) = report["attached"]
    # This registry lists referrers but sends no OCI-Subject header, so the client
    # also keeps the fallback tag; what matters is that the API itself lists the SBOM.
    assert attached["state"] == "pushed", attached
    digest = report["images"][0]["digest"]
    with urllib.request.urlopen(f"http://{host}/v2/ci/pub/referrers/{digest}") as resp:
        index = json.load(resp)
    assert [m["digest"] for m in index["manifests"]] == [attached["digest"]]
    # (this registry lists the config's media type as artifactType: read the manifest)
    req = urllib.request.Request(f"http://{host}/v2/ci/pub/manifests/{attached['digest']}",
                                 headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req) as resp:
        artifact = json.load(resp)
    assert artifact["artifactType"] == "application/spdx+json"
    assert artifact["subject"]["digest"] == digest
    with urllib.request.urlopen(f"http://{host}/v2/ci/pub/blobs/"
                                f"{artifact['layers'][0]['digest']}") as resp:
        assert b"/data/b-0.bin" in resp.read()
    # The SBOM lists the layers' files without the publisher having read a layer.
    r = run_cli("sbom", "img-b", "--json", store=tmp_path / "publisher")
    assert r.rc == 0, r.err
    assert "/data/b-0.bin" in r.out
    held = {"sha256:" + p.name for p in (tmp_path / "publisher" / "blobs" / "sha256").iterdir()}
    assert not layer_digests(tmp_path / "publisher") & held


def test_entry_of_another_key_is_ignored(proxy: FaultProxy, tmp_path: Path) -> None:
    """An entry whose record is not the key's (a tag copied over, a writer's mistake)
    is not used: warning naming the key, the layer built."""
    project = one_layer_project(tmp_path / "proj", "one", seed=41)
    one_layer_project(project, "two", seed=42)
    rc, _, err = cached(proxy, "swap/cache", "assemble", "one", "two",
                        store=tmp_path / "writer", project=project)
    assert rc == 0, err
    keys = {r["name"]: r["input_key"] for r in json.loads(run_cli(
        "layers", "ls", "--json", store=tmp_path / "writer").out)}
    # Point `two`'s tag at `one`'s entry.
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    tag = "layer-" + keys["one"].split(":")[1]
    req = urllib.request.Request(f"http://{proxy.host}/v2/swap/cache/manifests/{tag}",
                                 headers=accept)
    with urllib.request.urlopen(req) as resp:
        body = resp.read()
    put = urllib.request.Request(
        f"http://{proxy.host}/v2/swap/cache/manifests/layer-{keys['two'].split(':')[1]}",
        data=body, method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    urllib.request.urlopen(put).close()
    rc, out, err = cached(proxy, "swap/cache", "assemble", "one", "two", "--json",
                          store=tmp_path / "reader", project=project)
    assert rc == 0, err
    assert keys["two"] in err and f"its record is for key {keys['one']}" in err
    layers = json.loads(out)["layers"]
    assert layers["built"] == ["two"] and layers["remote"] == ["one"]
    assert err.count("ignored") == 1
    # The reader (readwrite) wrote the entry over: the next runner takes both layers.
    rc, out, err = cached(proxy, "swap/cache", "assemble", "one", "two", "--json",
                          store=tmp_path / "third", project=project)
    assert rc == 0 and not err, err
    assert json.loads(out)["layers"]["remote"] == ["one", "two"]


def test_checks_read_cached_layers_on_demand(proxy: FaultProxy, tmp_path: Path) -> None:
    """`ociforge test` on a runner with an empty store: the layers come from the cache
    (not built) and their bytes are fetched because the checks read them."""
    (tmp_path / "proj").mkdir()
    project = make_hello_project(tmp_path / "proj")
    recipe = project / "recipes" / "hello.yaml"
    recipe.write_text(recipe.read_text() + textwrap.dedent("""\
        checks:
          hello:
            images: ["hello*"]
            files:
              - {path: /usr/local/bin/hello, mode: "0755", owner: "0:0"}
              - {path: /etc/motd, contains: ["built by ociforge"]}
        """))
    rc, _, err = cached(proxy, "hello/cache", "assemble", "hello", store=tmp_path / "a",
                        project=project)
    assert rc == 0, err
    proxy.log.clear()
    rc, out, err = cached(proxy, "hello/cache", "test", "hello", "--no-runtime", "--json",
                          "--report-dir", tmp_path / "reports", store=tmp_path / "b",
                          project=project)
    assert rc == 0, out + err
    summary = json.loads(out)["summary"]
    assert summary["failed"] == 0 and summary["passed"] >= 2, out
    blobs = layer_digests(tmp_path / "b")
    assert blob_gets(proxy, blobs) == len(blobs) == 2  # each layer fetched once
    r = run_cli("layers", "ls", "--json", store=tmp_path / "b")
    assert all(rec["input_key"] for rec in r.json())
    assert sum(proxy.count(m) for m in WRITES) == 0  # nothing built, nothing to share
    fsck_clean(tmp_path / "b")
