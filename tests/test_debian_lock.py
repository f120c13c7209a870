"""The Debian lock against a real signed Debian archive served on 127.0.0.1 (small
`.deb`s made with dpkg-deb, indexes by dpkg-scanpackages, InRelease signed with a
throwaway key): the lock pins what apt resolved and keeps it while the archive moves,
`lock --update` moves it and then exactly the base layer is rebuilt, the same lock
gives the same layer from any mirror and an empty cache, a dropped version comes from
the snapshot archive, and every failure names the package and version."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ociforge.errors import BuildError, LockError, UsageError
from ociforge.sources.debian import DebianSource, _verify
from ociforge.sources.debianlock import (
    DebianLock,
    DebianPackage,
    Installed,
    compare,
    pin_installed,
    read_lock,
    render_lock,
)

from conftest import TEST_CACHE, need_tool, run_cli, store_is_empty, write
from debian_repo import Archive, Deb, Signer, make_deb, snapshot_copy
from fault_proxy import FaultProxy
from httpserver import serve
from registry_server import Registry

pytestmark = pytest.mark.slow
LOCK = Path("layers") / "locks" / "base.lock"
REPO = Path(__file__).resolve().parent.parent


@dataclass
class Repo:
    archive: Archive
    keyring: Path
    debs: dict[str, Deb]
    work: Path

    def env(self, url: str, cache: str = "cache", **extra: str) -> dict[str, str]:
        return {"OCIFORGE_DEBIAN_MIRROR": f"{url}/debian",
                "OCIFORGE_DEBIAN_SECURITY_MIRROR": f"{url}/debian-security",
                "OCIFORGE_DEBIAN_KEYRING": str(self.keyring),
                "OCIFORGE_DEBIAN_SNAPSHOT": "http://127.0.0.1:9/{archive}/{timestamp}/",
                "OCIFORGE_CACHE": str(self.work / cache), **extra}


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    need_tool("mmdebstrap")
    signer = Signer(tmp_path / "gnupg")
    # apt checks signatures as its unprivileged user (_apt): the keyring must be
    # readable by it, which pytest's private tmp_path is not.
    shared = Path(tempfile.mkdtemp(prefix="ocf-keyring-"))
    shared.chmod(0o755)
    keyring = shared / "archive-keyring.gpg"
    shutil.copyfile(signer.keyring, keyring)
    keyring.chmod(0o644)
    archive = Archive(tmp_path / "www", signer)
    debs = {"libocf": make_deb(tmp_path, "libocf", "1.0",
                               files={"usr/lib/ocf/lib.txt": "lib 1.0\n"}),
            "hello-1.0": make_deb(tmp_path, "hello-ocf", "1.0", depends="libocf",
                                  files={"usr/share/hello-ocf/version": "1.0\n"}),
            "hello-1.1": make_deb(tmp_path, "hello-ocf", "1.1", depends="libocf",
                                  files={"usr/share/hello-ocf/version": "1.1\n"})}
    archive.publish("bookworm", debs["libocf"], debs["hello-1.0"])
    try:
        yield Repo(archive, keyring, debs, tmp_path)
    finally:
        signer.close()
        shutil.rmtree(shared)


def project(root: Path, packages: str = "[hello-ocf]") -> Path:
    write(root / "layers" / "base.yaml", f"""\
        source:
          kind: debian
          lock: {LOCK}
          suite: bookworm
          variant: extract
          exclude_docs: false
          packages: {packages}
        """)
    write(root / "files" / "app.txt", "app\n")
    write(root / "layers" / "app.yaml",
          "source: {kind: files, files: [{src: files/app.txt, dest: /app.txt}]}\n")
    write(root / "recipes" / "r.yaml", """\
        images:
          base-img: {layers: [base]}
          app: {layers: [base, app]}
        """)
    return root


def assemble(store: Path, proj: Path, env: dict[str, str]) -> dict[str, object]:
    r = run_cli("assemble", "--all", "--json", store=store, project=proj, env=env)
    assert r.rc == 0, r.err
    report: dict[str, object] = r.json()
    return report


def layer_file(store: Path, image: str, path: str) -> str:
    """A file of the image's first layer, read from the store's blob."""
    index = json.loads((store / "index.json").read_text())
    desc = next(m for m in index["manifests"]
                if m["annotations"]["org.opencontainers.image.ref.name"] == image)
    blob = store / "blobs" / "sha256"
    manifest = json.loads((blob / desc["digest"].split(":")[1]).read_text())
    layer = blob / manifest["layers"][0]["digest"].split(":")[1]
    with tarfile.open(layer) as tf:
        member = tf.extractfile(path)
        assert member is not None
        return member.read().decode()


def digests(store: Path) -> dict[str, str]:
    index = json.loads((store / "index.json").read_text())
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
            for m in index["manifests"]}


@contextlib.contextmanager
def proxy_stopped(proxy: FaultProxy) -> Iterator[None]:
    try:
        yield
    finally:
        proxy.stop()


def blobs_of(store: Path, images: list[str]) -> set[str]:
    """Config and layer digests of these stored images."""
    blob = store / "blobs" / "sha256"
    out = set()
    for digest in (digests(store)[name] for name in images):
        manifest = json.loads((blob / digest.split(":")[1]).read_text())
        out |= {manifest["config"]["digest"], *(d["digest"] for d in manifest["layers"])}
    return out


def push_all(store: Path, proxy: FaultProxy) -> dict[str, object]:
    """Every image of the store to one repository through the counting proxy (SBOMs
    left out: they change with every package and are counted by the push tests)."""
    r = run_cli("push", "--all", "--to", f"{proxy.host}/deb/matrix", "--no-sbom", "--json",
                store=store)
    assert r.rc == 0, r.err
    report: dict[str, object] = r.json()
    return report


def test_the_lock_holds_while_the_archive_moves_and_update_rebuilds_only_the_base(
        repo: Repo, registry: Registry) -> None:
    """...and the weekly push after the update uploads exactly the new blobs (counted
    at a proxy in front of Debian's docker-registry): the new base layer once, the two
    images' new configs; the unchanged `app` layer not again."""
    proj = project(repo.work / "p")
    store = repo.work / "s"
    proxy = FaultProxy(registry.port).start()
    with proxy_stopped(proxy), serve(repo.archive.root) as url:
        env = repo.env(url)
        locked = run_cli("lock", store=store, project=proj, env=env)
        assert locked.rc == 0, locked.err
        lock = read_lock(proj / LOCK)
        pins = {p.name: p for p in lock.packages}
        assert {n: (p.version, p.suite) for n, p in pins.items()} == {
            "hello-ocf": ("1.0", "bookworm"), "libocf": ("1.0", "bookworm")}
        assert lock.suites == ("bookworm", "bookworm-updates", "bookworm-security")
        first = assemble(store, proj, env)
        assert sorted(first["layers"]["built"]) == ["app", "base"]  # type: ignore[index]
        before = digests(store)
        assert layer_file(store, "app", "usr/share/hello-ocf/version") == "1.0\n"
        pushed_before = push_all(store, proxy)
        # The release before the update, kept as a registry tag for `diff` below.
        kept = run_cli("push", "app", "--to", f"{registry.host}/deb/release:app", "--no-sbom",
                       store=store)
        assert kept.rc == 0, kept.err
        old_blobs = blobs_of(store, ["app", "base-img"])
        assert set(proxy.digest_of_upload.values()) == old_blobs
        assert pushed_before["blobs"]["pushed"] == proxy.completed_uploads == 4

        # A security update: the index now points at 1.1; the lock still pins 1.0.
        repo.archive.publish("bookworm-security", repo.debs["hello-1.1"])
        text = (proj / LOCK).read_text()
        assert run_cli("lock", store=store, project=proj, env=env).rc == 0
        assert (proj / LOCK).read_text() == text
        assert run_cli("lock", "--check", store=store, project=proj).rc == 0
        again = assemble(store, proj, env)
        assert again["layers"]["built"] == []  # type: ignore[index]
        assert digests(store) == before

        updated = run_cli("lock", "--update", "base", "--json", store=store, project=proj,
                          env=env)
        assert updated.rc == 0, updated.err
        assert updated.json() == [{"layer": "base", "lock": str(LOCK), "packages": 2,
                                   "changed": True}]
        hello = read_lock(proj / LOCK).by_name()["hello-ocf"]
        assert (hello.version, hello.suite, hello.security) == ("1.1", "bookworm-security",
                                                                 True)
        after = assemble(store, proj, env)
        uploads_before = dict(proxy.digest_of_upload)
        pushed_after = push_all(store, proxy)
        new_uploads = {d for u, d in proxy.digest_of_upload.items() if u not in uploads_before}
        new_blobs = blobs_of(store, ["app", "base-img"]) - old_blobs
    # The push uploaded exactly the blobs that are new: base layer, two configs.
    assert new_uploads == new_blobs and len(new_blobs) == 3
    assert pushed_after["blobs"]["pushed"] == proxy.completed_uploads - 4 == 3
    # `diff` against the release before names exactly the updated package.
    tagged = digests(store)
    d = run_cli("diff", f"{registry.host}/deb/release:app", "app", "--json", store=store,
                project=proj)
    assert d.rc == 0, d.err
    assert digests(store)["app"] == tagged["app"]
    changes = d.json()
    assert [(c["a"]["name"], c["b"]["name"]) for c in changes["layers"]["changed"]] == [
        ("base", "base")]
    assert changes["packages"]["debian"] == {
        "changed": [{"name": "hello-ocf", "old": "1.0", "new": "1.1"}],
        "added": [], "removed": []}
    assert not any(g for k, g in changes["packages"].items() if k != "debian" and any(g.values()))
    # Exactly one layer rebuilt; both images re-stitched on it.
    assert after["layers"]["built"] == ["base"]  # type: ignore[index]
    assert "app" in after["layers"]["reused"]  # type: ignore[index,operator]
    now = digests(store)
    assert now["app"] != before["app"] and now["base-img"] != before["base-img"]
    assert layer_file(store, "app", "usr/share/hello-ocf/version") == "1.1\n"
    sbom = run_cli("sbom", "app", "--format", "cyclonedx", store=store, project=proj)
    assert sbom.rc == 0, sbom.err
    comps = {c["name"]: c for c in json.loads(sbom.out)["components"]}
    assert comps["hello-ocf"]["version"] == "1.1"
    props = {p["name"]: p["value"] for p in comps["hello-ocf"]["properties"]}
    assert props["ociforge:debian:suite"] == "bookworm-security"


def lock_and_build(repo: Repo) -> Path:
    """The project locked, and built into store s1 with its own downloads cache."""
    proj = project(repo.work / "p")
    with serve(repo.archive.root) as url:
        assert run_cli("lock", store=repo.work / "s0", project=proj,
                       env=repo.env(url)).rc == 0
        assemble(repo.work / "s1", proj, repo.env(url, cache="cache1"))
    return proj


def test_same_lock_same_layer_from_another_mirror_and_an_empty_cache(repo: Repo) -> None:
    proj = lock_and_build(repo)
    # Another day, another machine: a mirror elsewhere (it has moved on: 1.1 in the
    # security suite), an empty downloads cache, another time zone.
    repo.archive.publish("bookworm-security", repo.debs["hello-1.1"])
    other = repo.work / "elsewhere"
    shutil.copytree(repo.archive.root, other / "mirror" / "path")
    with serve(other) as url:
        env = repo.env(f"{url}/mirror/path", cache="cache2", TZ="Asia/Tokyo")
        assemble(repo.work / "s2", proj, env)
    assert digests(repo.work / "s1") == digests(repo.work / "s2")


def test_a_version_the_mirror_dropped_comes_from_the_snapshot_archive(repo: Repo) -> None:
    proj = lock_and_build(repo)
    resolved = read_lock(proj / LOCK).resolved
    snap = repo.work / "snapshot"
    snapshot_copy(repo.archive, snap, resolved)
    repo.archive.publish("bookworm-security", repo.debs["hello-1.1"])
    repo.archive.withdraw(repo.debs["hello-1.0"])
    with serve(repo.archive.root) as url, serve(snap) as snap_url:
        env = repo.env(url, cache="cache2",
                       OCIFORGE_DEBIAN_SNAPSHOT=f"{snap_url}/{{archive}}/{{timestamp}}/")
        assemble(repo.work / "s2", proj, env)
        assert digests(repo.work / "s1") == digests(repo.work / "s2")
        # Neither the mirror nor the snapshot archive has it: the package and version.
        shutil.rmtree(snap / "debian")
        env = {**env, "OCIFORGE_CACHE": str(repo.work / "cache3")}
        r = run_cli("assemble", "app", store=repo.work / "s3", project=proj, env=env)
    assert r.rc == 6, r.err
    assert "Debian package hello-ocf 1.0 (amd64, bookworm) could not be fetched" in r.err
    assert f"{url}/debian/pool/main/hello-ocf_1.0_amd64.deb (HTTP 404)" in r.err
    assert (f"{snap_url}/debian/{resolved}/pool/main/hello-ocf_1.0_amd64.deb (HTTP 404)"
            in r.err)
    assert len(r.err.strip().splitlines()) == 1
    assert store_is_empty(repo.work / "s3")


def test_a_damaged_cached_deb_is_fetched_again_or_named(repo: Repo) -> None:
    proj = project(repo.work / "p")
    with serve(repo.archive.root) as url:
        env = repo.env(url)
        assert run_cli("lock", store=repo.work / "s0", project=proj, env=env).rc == 0
        assemble(repo.work / "s1", proj, env)
        hello = read_lock(proj / LOCK).by_name()["hello-ocf"]
        cached = repo.work / "cache" / "downloads" / "sha256" / hello.sha256
        assert cached.exists()
        cached.write_bytes(b"damaged")
        assemble(repo.work / "s2", proj, env)  # quarantined, fetched again
    assert cached.read_bytes() == repo.debs["hello-1.0"].path.read_bytes()
    assert digests(repo.work / "s1") == digests(repo.work / "s2")
    cached.write_bytes(b"damaged again")
    offline = repo.env("http://127.0.0.1:9")
    r = run_cli("assemble", "app", store=repo.work / "s3", project=proj, env=offline)
    assert r.rc == 4, r.err
    assert "Debian package hello-ocf 1.0: the cached download does not match its pin" in r.err
    assert "quarantine" in r.err and store_is_empty(repo.work / "s3")


def test_a_missing_or_stale_lock_stops_the_build(repo: Repo) -> None:
    proj = project(repo.work / "p")
    store = repo.work / "s"
    r = run_cli("assemble", "app", store=store, project=proj)
    assert r.rc == 3 and "layers/locks/base.lock is missing: run `ociforge lock base`" in r.err
    with serve(repo.archive.root) as url:
        assert run_cli("lock", store=store, project=proj, env=repo.env(url)).rc == 0
    assert run_cli("lock", "--check", store=store, project=proj).rc == 0
    # The layer asks for another package list: the lock no longer matches it.
    project(proj, packages="[hello-ocf, libocf]")
    r = run_cli("lock", "--check", store=store, project=proj)
    assert r.rc == 3
    assert ("layer base: layers/locks/base.lock was resolved for include 'hello-ocf', the "
            "layer asks for 'hello-ocf libocf'") in r.err
    project(proj)
    # A line edited by hand.
    lock = proj / LOCK
    lock.write_text(lock.read_text().replace("libocf 1.0 amd64", "libocf 1.1 amd64"))
    r = run_cli("assemble", "app", store=store, project=proj)
    assert r.rc == 3 and "edited or truncated" in r.err and store_is_empty(store)


def test_an_archive_signed_by_another_key_is_refused(repo: Repo, tmp_path: Path) -> None:
    other = Signer(tmp_path / "other-gnupg")
    try:
        shutil.copyfile(other.keyring, repo.keyring)
    finally:
        other.close()
    proj = project(repo.work / "p")
    with serve(repo.archive.root) as url:
        r = run_cli("lock", store=repo.work / "s", project=proj, env=repo.env(url))
    assert r.rc == 7
    assert "apt could not verify" in r.err and str(repo.keyring) in r.err
    assert not (proj / LOCK).exists()


def test_the_shipped_base_carries_the_security_updates_of_its_lock(tmp_path: Path) -> None:
    """The committed lock pins the security suite's versions (openjdk and the other
    packages with security updates when it was made), and the SBOM of an image of the
    test store (built from that lock by scripts/prebuild-spark.sh) lists every locked
    package at its locked version, with the suite it came from."""
    lock = read_lock(REPO / "layers" / "locks" / "debian-base.lock")
    security = {p.name for p in lock.packages if p.security}
    assert {"openjdk-17-jre-headless", "libssl3", "libpython3.11-stdlib"} <= security
    store = TEST_CACHE / "spark-store"
    if not (store / "index.json").exists():
        pytest.fail(f"{store} is missing: run scripts/prebuild-spark.sh first")
    out = tmp_path / "sbom.json"
    r = run_cli("sbom", "spark-4.1.1", "--format", "cyclonedx", "-o", out, store=store,
                timeout=900)
    assert r.rc == 0, r.err
    debs = {}
    for c in json.loads(out.read_text())["components"]:
        props = {p["name"]: p["value"] for p in c.get("properties", [])}
        if "ociforge:debian:suite" in props:
            debs[c["name"]] = (c["version"], props["ociforge:debian:suite"])
    assert debs == {p.name: (p.version, p.suite) for p in lock.packages}


# -- the lock format, without an archive -------------------------------------------------


def _pkg(name: str, version: str, suite: str = "bookworm") -> DebianPackage:
    return DebianPackage(name, version, "amd64", suite, name, version, 10, "a" * 64,
                         f"pool/main/{name}_{version}_amd64.deb")


def test_lock_round_trip_and_refusals(tmp_path: Path) -> None:
    lock = DebianLock(("bookworm", "bookworm-security"), "amd64", ("main",), "apt",
                      ("python3",), "20261130T000000Z",
                      (_pkg("python3", "3.11.2-1"), _pkg("libssl3", "3.0.22-1~deb12u2",
                                                         "bookworm-security")))
    path = tmp_path / "x.lock"
    path.write_text(render_lock(lock))
    back = read_lock(path)
    assert back.by_name() == lock.by_name() and back.suites == lock.suites
    assert [p.name for p in back.packages if p.security] == ["libssl3"]
    text = path.read_text()
    path.write_text(text.replace(" 10 sha256:", " ten sha256:", 1))
    with pytest.raises(LockError, match=r"x.lock:\d+: not a lock line"):
        read_lock(path)
    path.write_text("\n".join(line for line in text.splitlines() if "python3 " not in line))
    with pytest.raises(LockError, match="edited or truncated"):
        read_lock(path)
    with pytest.raises(LockError, match="is missing"):
        read_lock(tmp_path / "none.lock")


def test_compare_names_what_moved() -> None:
    old = DebianLock(("bookworm",), "amd64", ("main",), "apt", (), "20261130T000000Z",
                     (_pkg("bash", "5.2-1"), _pkg("libssl3", "3.0.20-1"), _pkg("gone", "1")))
    new = DebianLock(("bookworm",), "amd64", ("main",), "apt", (), "20261207T000000Z",
                     (_pkg("bash", "5.2-1", "bookworm-updates"),
                      _pkg("libssl3", "3.0.22-1", "bookworm-security"), _pkg("added", "2")))
    changes = compare(old, new)
    assert [(c.name, c.old and c.old.version, c.new and c.new.version, c.security)
            for c in changes] == [("added", None, "2", False), ("gone", "1", None, False),
                                  ("libssl3", "3.0.20-1", "3.0.22-1", True)]


def test_a_version_in_several_suites_is_taken_from_the_security_suite(tmp_path: Path) -> None:
    stanza = ("Package: libssl3\nVersion: 3.0.22-1\nArchitecture: amd64\nSource: openssl\n"
              "Size: 5\nSHA256: {sha}\nFilename: {fn}\n")
    main = tmp_path / "main_Packages"
    main.write_text(stanza.format(sha="b" * 64, fn="pool/main/o/openssl/libssl3.deb"))
    sec = tmp_path / "sec_Packages"
    sec.write_text(stanza.format(sha="b" * 64, fn="pool/updates/main/o/openssl/libssl3.deb"))
    pins = pin_installed([Installed("libssl3", "3.0.22-1", "amd64")],
                         {"bookworm": [main], "bookworm-security": [sec]},
                         ("bookworm", "bookworm-security"))
    assert [(p.suite, p.source, p.filename) for p in pins] == [
        ("bookworm-security", "openssl", "pool/updates/main/o/openssl/libssl3.deb")]
    with pytest.raises(LockError, match="in no index of bookworm: zlib1g=1"):
        pin_installed([Installed("zlib1g", "1", "amd64")], {"bookworm": [main]},
                      ("bookworm",))


def test_a_root_filesystem_that_differs_from_its_lock_is_refused() -> None:
    lock = DebianLock(("bookworm",), "amd64", ("main",), "apt", (), "20261130T000000Z",
                      (_pkg("bash", "5.2-1"),))
    _verify([{"name": "bash", "version": "5.2-1", "architecture": "amd64"}], lock, "l.lock")
    with pytest.raises(BuildError, match=re.escape("installed but not locked: dash=1; locked "
                                                   "but not installed: bash=5.2-1")):
        _verify([{"name": "dash", "version": "1", "architecture": "amd64"}], lock, "l.lock")



def test_suites_and_where_their_packages_come_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three suites by default, the security one from the security archive; every
    place is configurable, and a snapshot date resolves from the snapshot archive."""
    for var in ("OCIFORGE_DEBIAN_MIRROR", "OCIFORGE_DEBIAN_SECURITY_MIRROR",
                "OCIFORGE_DEBIAN_SNAPSHOT", "OCIFORGE_DEBIAN_KEYRING"):
        monkeypatch.delenv(var, raising=False)
    src = DebianSource.model_validate({"kind": "debian", "lock": "l.lock"})
    assert src.suites() == ("bookworm", "bookworm-updates", "bookworm-security")
    assert [line.split()[2:4] for line in src.source_lines()] == [
        ["http://deb.debian.org/debian", "bookworm"],
        ["http://deb.debian.org/debian", "bookworm-updates"],
        ["http://deb.debian.org/debian-security", "bookworm-security"]]
    assert all("[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" in line
               for line in src.source_lines())
    monkeypatch.setenv("OCIFORGE_DEBIAN_SECURITY_MIRROR", "http://127.0.0.1:9/sec")
    assert src.mirror_for("bookworm-security") == "http://127.0.0.1:9/sec"
    snap = DebianSource.model_validate({"kind": "debian", "lock": "l.lock", "security": False,
                                        "snapshot": "20261101T000000Z"})
    assert snap.suites() == ("bookworm", "bookworm-updates")
    assert snap.mirror_for("bookworm") == \
        "https://snapshot.debian.org/archive/debian/20261101T000000Z"
    monkeypatch.setenv("OCIFORGE_DEBIAN_SNAPSHOT", "http://127.0.0.1:9/{archive}/{when}/")
    with pytest.raises(UsageError, match=re.escape("only {archive} and {timestamp}")):
        snap.mirror_for("bookworm")
    monkeypatch.setenv("OCIFORGE_DEBIAN_KEYRING", "/nonexistent.gpg")
    with pytest.raises(BuildError, match=re.escape("keyring /nonexistent.gpg does not exist")):
        src.source_lines()
