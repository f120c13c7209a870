"""The `maven` source against Maven-layout repositories served on 127.0.0.1.

The jars are stand-ins made here (zip files holding a class file name) under the real
coordinates of the Spark add-ons; Maven Central is never contacted.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import shutil
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from maven_repo import make_jar, publish
from pydantic import ValidationError

from ociforge.errors import AuthError, LockError, RecipeError
from ociforge.maven_settings import mirror_of_matches, parse_settings
from ociforge.sources.base import BuildContext
from ociforge.sources.maven import (
    Coordinate,
    LockEntry,
    MavenSource,
    effective_repositories,
    parse_checksum,
    read_lock,
    render_lock,
    update_lock,
)

from conftest import run_cli, store_is_empty, write
from httpserver import serve

HADOOP_AWS = "org.apache.hadoop:hadoop-aws:3.4.2"
AWS_BUNDLE = "software.amazon.awssdk:bundle:2.29.52"
ACCELERATOR = "software.amazon.s3.analyticsaccelerator:analyticsaccelerator-s3:1.2.1"
RAPIDS = "com.nvidia:rapids-4-spark_2.13:26.06.0:cuda12"
DEBIAN_JAR = ("javax.inject:javax.inject:1",
              Path("/usr/share/maven-repo/javax/inject/javax.inject/1/javax.inject-1.jar"))
USER, SECRET = "maven-reader", "s3cr3t-Pa55word"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A private downloads cache, no ~/.m2/settings.xml, no inherited mirrors."""
    monkeypatch.setenv("OCIFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OCIFORGE_MAVEN_SETTINGS", "none")
    for name in ("OCIFORGE_MAVEN_REPOS", "OCIFORGE_MAVEN_USERNAME", "OCIFORGE_MAVEN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


# -- a Maven-layout repository ---------------------------------------------------------


class _AuthHandler(SimpleHTTPRequestHandler):
    """Static files behind HTTP basic auth (USER/SECRET), like a private Nexus."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _authorized(self) -> bool:
        want = "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
        if self.headers.get("Authorization") == want:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="maven"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False

    def do_GET(self) -> None:
        if self._authorized():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._authorized():
            super().do_HEAD()


class _FlakyHandler(SimpleHTTPRequestHandler):
    """Answers 503 to the first requests, then serves files: a busy mirror."""

    failures_left = 0
    lock = threading.Lock()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _fail(self) -> bool:
        with _FlakyHandler.lock:
            if _FlakyHandler.failures_left <= 0:
                return False
            _FlakyHandler.failures_left -= 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def do_GET(self) -> None:
        if not self._fail():
            super().do_GET()

    def do_HEAD(self) -> None:
        if not self._fail():
            super().do_HEAD()



def project(root: Path, artifacts: list[str], repositories: list[str] | None = None) -> Path:
    lines = ["source:", "  kind: maven", "  lock: layers/locks/maven.lock", "  artifacts:"]
    lines += [f"    - {a}" for a in artifacts]
    if repositories:
        lines += ["  repositories:"] + [f"    - {r}" for r in repositories]
    write(root / "layers" / "addons.yaml", "\n".join(lines) + "\n")
    write(root / "recipes" / "r.yaml", "images:\n  img:\n    layers: [addons]\n")
    return root


def layer_members(store: Path, report: dict[str, Any]) -> dict[str, tuple[int, bytes]]:
    digest = report["images"][0]["layers"][0]["digest"]
    with tarfile.open(store / "blobs" / "sha256" / digest.split(":")[1]) as tar:
        out = {}
        for m in tar:
            if m.isfile():
                f = tar.extractfile(m)
                assert f is not None
                out[m.name] = (m.mode, f.read())
        return out


def records_text(store: Path) -> str:
    return "".join(p.read_text() for p in (store / "ociforge" / "layers").glob("*.json"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- units -------------------------------------------------------------------------------


def test_coordinates() -> None:
    c = Coordinate.parse(RAPIDS)
    assert c.filename == "rapids-4-spark_2.13-26.06.0-cuda12.jar"
    assert c.path == "com/nvidia/rapids-4-spark_2.13/26.06.0/" + c.filename
    assert str(c) == RAPIDS
    pom = Coordinate.parse("org.apache.iceberg:iceberg-aws-bundle:1.11.0@pom")
    assert pom.filename == "iceberg-aws-bundle-1.11.0.pom" and str(pom).endswith("@pom")
    assert str(Coordinate.parse(f"{HADOOP_AWS}@jar")) == HADOOP_AWS
    for bad in ("org.apache.hadoop:hadoop-aws", "g:a:[1.0,2.0)", "g:a:1.0-SNAPSHOT",
                "g:a:LATEST", "g:a:1:c:d", "g a:b:1", "../x:y:1"):
        with pytest.raises(ValueError):
            Coordinate.parse(bad)


def test_checksum_file_formats() -> None:
    digest = hashlib.sha1(b"x").hexdigest()
    for text in (digest, f"{digest}\n", f"{digest}  hadoop-aws-3.4.2.jar\n",
                 f"{digest} *hadoop-aws-3.4.2.jar", digest.upper(),
                 f"SHA1 (hadoop-aws-3.4.2.jar) = {digest}",
                 " ".join(digest[i:i + 4] for i in range(0, 40, 4))):
        assert parse_checksum(text, "sha1") == digest, text
    assert parse_checksum("<html>not found</html>", "sha1") is None
    assert parse_checksum(hashlib.sha256(b"x").hexdigest(), "sha1") is None


def test_spec_validation() -> None:
    ok: dict[str, Any] = {"kind": "maven", "lock": "l.lock", "artifacts": [HADOOP_AWS]}
    assert MavenSource.model_validate(ok).dest == "/opt/spark/jars"
    cases: list[tuple[dict[str, Any], str]] = [
             ({"transitive": True}, "transitive resolution is not supported"),
             ({"artifacts": ["g:a:1.0-SNAPSHOT"]}, "exact release"),
             ({"artifacts": [HADOOP_AWS, "other.group:hadoop-aws:3.4.2"]}, "both become"),
             ({"repositories": ["https://u:p@nexus.example/repo"]}, "no credentials"),
             ({"repositories": ["ftp://mirror/maven2"]}, "not an http(s) URL"),
             ({"dest": "opt/jars"}, "absolute")]
    for extra, message in cases:
        with pytest.raises(ValidationError, match=re.escape(message)):
            MavenSource.model_validate({**ok, **extra})


def test_lock_round_trip_and_shared_entries(tmp_path: Path) -> None:
    lock = tmp_path / "maven.lock"
    update_lock(lock, {HADOOP_AWS: LockEntry("a" * 64, "https://repo1.maven.org/maven2")})
    update_lock(lock, {AWS_BUNDLE: LockEntry("b" * 64, "http://127.0.0.1:1")})
    entries = read_lock(lock)
    assert entries[HADOOP_AWS].sha256 == "a" * 64 and entries[AWS_BUNDLE].sha256 == "b" * 64
    assert render_lock(entries) == lock.read_text()
    assert f"{HADOOP_AWS} sha256:{'a' * 64} https://repo1.maven.org/maven2" in lock.read_text()
    lock.write_text("org.apache.hadoop:hadoop-aws:3.4.2 md5:abc\n")
    with pytest.raises(RecipeError, match=r"maven\.lock:1: not a lock line"):
        read_lock(lock)


SETTINGS = """\
<?xml version="1.0"?>
<settings xmlns="http://maven.apache.org/SETTINGS/1.2.0">
  <servers>
    <server><id>corp</id><username>{user}</username><password>${{env.CORP_PW}}</password></server>
    <server><id>vault</id><username>x</username><password>{{COQLCE6DU6GtcS5P=}}</password></server>
  </servers>
  <mirrors>
    <mirror><id>corp</id><url>{url}</url><mirrorOf>{mirror_of}</mirrorOf></mirror>
  </mirrors>
</settings>
"""


def test_settings_mirrors_and_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORP_PW", SECRET)
    s = parse_settings(SETTINGS.format(user=USER, url="https://nexus.example/maven",
                                       mirror_of="external:*,!nvidia"))
    creds = s.credentials("corp")
    assert creds is not None and (creds.username, creds.secret) == (USER, SECRET)
    assert SECRET not in repr(creds)
    with pytest.raises(AuthError, match="encrypted"):
        s.credentials("vault")
    assert s.mirror_for("central", "https://repo1.maven.org/maven2") is not None
    assert s.mirror_for("nvidia", "https://nvidia.example/maven") is None
    assert s.mirror_for("local", "http://127.0.0.1:8081/maven") is None
    assert mirror_of_matches("*", "x", "http://127.0.0.1")
    assert mirror_of_matches("external:http:*", "x", "http://nexus.example")
    assert not mirror_of_matches("external:http:*", "x", "https://nexus.example")
    assert mirror_of_matches("a, central", "central", "https://repo1.maven.org/maven2")
    with pytest.raises(RecipeError, match="not well-formed"):
        parse_settings("<settings>")


def test_repository_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = BuildContext(project_root=tmp_path)
    empty = parse_settings("<settings/>")

    def urls(declared: list[Any], settings: Any = empty, flag: tuple[str, ...] = ()
             ) -> list[str]:
        spec = MavenSource.model_validate({"kind": "maven", "lock": "l", "artifacts": [HADOOP_AWS],
                                           "repositories": declared})
        flagged = dataclasses.replace(ctx, maven_repos=flag)  # the CLI's --maven-repo
        return [r.url for r in effective_repositories(spec.repositories, flagged, settings)]

    assert urls([]) == ["https://repo1.maven.org/maven2"]
    monkeypatch.setenv("OCIFORGE_MAVEN_REPOS", "http://127.0.0.1:1/a/, mirror=http://127.0.0.1:2")
    assert urls([]) == ["http://127.0.0.1:1/a", "http://127.0.0.1:2"]
    assert urls(["https://recipe.example/m2"]) == ["https://recipe.example/m2"]
    assert urls([], flag=("http://127.0.0.1:3",)) == ["http://127.0.0.1:3"]
    # A settings.xml mirror stands in for what its mirrorOf covers, env-given or not.
    monkeypatch.setenv("CORP_PW", SECRET)
    corp = parse_settings(SETTINGS.format(user=USER, url="https://nexus.example/maven",
                                          mirror_of="central"))
    monkeypatch.delenv("OCIFORGE_MAVEN_REPOS")
    repos = effective_repositories([], ctx, corp)
    assert [(r.id, r.url) for r in repos] == [("corp", "https://nexus.example/maven")]
    assert repos[0].credentials is not None and repos[0].credentials.secret == SECRET
    # The unqualified env pair goes to flag/env repositories only, never to a recipe's.
    monkeypatch.setenv("OCIFORGE_MAVEN_USERNAME", USER)
    monkeypatch.setenv("OCIFORGE_MAVEN_PASSWORD", SECRET)
    spec = MavenSource.model_validate({"kind": "maven", "lock": "l", "artifacts": [HADOOP_AWS],
                                       "repositories": ["https://recipe.example/m2"]})
    assert effective_repositories(spec.repositories, ctx, empty)[0].credentials is None
    monkeypatch.setenv("OCIFORGE_MAVEN_REPOS", "https://user:pw@env.example/m2")
    env_repo = effective_repositories([], ctx, empty)[0]
    assert env_repo.url == "https://env.example/m2"  # userinfo never stays in the URL
    assert env_repo.credentials is not None and env_repo.credentials.username == "user"
    monkeypatch.setenv("OCIFORGE_MAVEN_REPOS", "https://env.example/m2")
    assert effective_repositories([], ctx, empty)[0].credentials.secret == SECRET  # type: ignore[union-attr]
    monkeypatch.setenv("OCIFORGE_MAVEN_RECIPE_EXAMPLE_USERNAME", "per-id")
    assert effective_repositories(spec.repositories, ctx, empty)[0].credentials.username == "per-id"  # type: ignore[union-attr]


# -- end to end: `ociforge lock`, then `ociforge assemble` -------------------------------


@pytest.mark.slow
def test_lock_then_assemble_places_jars_and_reuses(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "m2"
    jars = {HADOOP_AWS: publish(repo, HADOOP_AWS, checksums=("sha1", "md5")),
            AWS_BUNDLE: publish(repo, AWS_BUNDLE, checksums=("sha1", "sha256", "sha512"),
                                style="named"),
            ACCELERATOR: publish(repo, ACCELERATOR, checksums=("md5",), style="upper"),
            RAPIDS: publish(repo, RAPIDS, checksums=("sha512",), style="named")}
    strongest = {HADOOP_AWS: "sha1", AWS_BUNDLE: "sha512", ACCELERATOR: "md5",
                 RAPIDS: "sha512"}
    coord, debian = DEBIAN_JAR
    if debian.exists():  # a real jar from Debian's Maven repository, when installed
        jars[coord] = publish(repo, coord, data=debian.read_bytes())
        strongest[coord] = "sha1"
    proj = project(tmp_path / "p", list(jars))
    store = tmp_path / "s"
    with serve(repo) as url:
        monkeypatch.setenv("OCIFORGE_MAVEN_REPOS", url)  # no list in the recipe
        # Never trust on first use: without a lock, assemble refuses and names the fix.
        first = run_cli("assemble", "img", store=store, project=proj)
        assert first.rc == 3, first.err
        assert ("layer addons: layers/locks/maven.lock is missing: run `ociforge lock addons`"
                in first.err)
        assert store_is_empty(store) and not (proj / "layers" / "locks").exists()
        locked = run_cli("lock", "--json", store=store, project=proj)
        assert locked.rc == 0, locked.err
        assert locked.json() == [{"layer": "addons", "lock": "layers/locks/maven.lock",
                                  "packages": len(jars), "changed": True}]
    r = run_cli("assemble", "img", "--json", store=store, project=proj)  # repository gone
    assert r.rc == 0, r.err
    members = layer_members(store, r.json())
    expected = {f"opt/spark/jars/{Coordinate.parse(c).filename}": data
                for c, data in jars.items()}
    assert {name: data for name, (_, data) in members.items()} == expected
    assert {mode for mode, _ in members.values()} == {0o644}
    assert "opt/spark/jars/rapids-4-spark_2.13-26.06.0-cuda12.jar" in members
    with zipfile.ZipFile(repo / Coordinate.parse(HADOOP_AWS).path) as zf:
        assert "org/apache/hadoop/fs/s3a/S3AFileSystem.class" in zf.namelist()

    # Each line: the pin, where it came from, its size, the strongest checksum file the
    # repository published (what the download was verified against), no signature.
    lock = (proj / "layers" / "locks" / "maven.lock").read_text()
    for c, data in jars.items():
        assert (f"{c} sha256:{sha(data)} {url} size={len(data)} checksum={strongest[c]} "
                "asc=none\n") in lock
    provenance = json.loads(records_text(store))["provenance"]["sources"][0]
    assert provenance["artifacts"][0] == {
        "coordinates": HADOOP_AWS, "filename": "hadoop-aws-3.4.2.jar",
        "sha256": sha(jars[HADOOP_AWS]), "repository": url}

    # The key comes from the lock, the layer from the store.
    again = run_cli("assemble", "img", "--json", store=store, project=proj)
    assert again.rc == 0, again.err
    assert again.json()["layers"]["built"] == []
    # A new store builds the same layer from the downloads cache, still offline.
    fresh = run_cli("assemble", "img", "--json", store=tmp_path / "s2", project=proj)
    assert fresh.rc == 0, fresh.err
    assert fresh.json()["images"][0]["layers"] == r.json()["images"][0]["layers"]


@pytest.mark.slow
@pytest.mark.parametrize("checksums,wrong", [(("sha1",), "sha1"),
                                             (("sha1", "sha512"), "sha512"),
                                             (("md5",), "md5")])
def test_wrong_checksum_file(tmp_path: Path, checksums: tuple[str, ...], wrong: str) -> None:
    """A stand-in whose checksum file does not match it (a corrupted or tampered
    artifact): `ociforge lock` refuses it and keeps nothing."""
    repo = tmp_path / "m2"
    publish(repo, AWS_BUNDLE, checksums=checksums, wrong=wrong)
    with serve(repo) as url:
        proj = project(tmp_path / "p", [AWS_BUNDLE], [url])
        r = run_cli("lock", store=tmp_path / "s", project=proj)
    assert r.rc == 4, r.err
    assert AWS_BUNDLE in r.err and url in r.err
    assert f"bundle-2.29.52.jar.{wrong}" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert store_is_empty(tmp_path / "s")
    assert not (proj / "layers" / "locks" / "maven.lock").exists()
    assert not list((tmp_path / "cache" / "downloads" / "sha256").iterdir())


@pytest.mark.slow
def test_repository_without_checksum_files(tmp_path: Path) -> None:
    repo = tmp_path / "m2"
    publish(repo, HADOOP_AWS, checksums=())
    with serve(repo) as url:
        proj = project(tmp_path / "p", [HADOOP_AWS], [url])
        r = run_cli("lock", store=tmp_path / "s", project=proj)
    assert r.rc == 4 and "publishes no checksum file" in r.err and HADOOP_AWS in r.err


@pytest.mark.slow
def test_missing_artifact_names_every_repository(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    publish(first, HADOOP_AWS)
    publish(second, HADOOP_AWS)
    with serve(first) as url1, serve(second) as url2:
        proj = project(tmp_path / "p", [HADOOP_AWS, AWS_BUNDLE], [url1, url2])
        r = run_cli("lock", store=tmp_path / "s", project=proj)
        assert r.rc == 6, r.err
        assert (f"{AWS_BUNDLE}: not found in any repository; tried {url1} (HTTP 404); "
                f"{url2} (HTTP 404)") in r.err
        assert not (proj / "layers" / "locks" / "maven.lock").exists()  # all or nothing
        data = publish(second, AWS_BUNDLE)
        found = run_cli("lock", store=tmp_path / "s", project=proj)
        assert found.rc == 0, found.err
    lock = (proj / "layers" / "locks" / "maven.lock").read_text()
    assert f"{AWS_BUNDLE} sha256:{sha(data)} {url2} " in lock
    assert f"{HADOOP_AWS} sha256:" in lock and f" {url1} size=" in lock


@pytest.mark.slow
def test_unreachable_repository(tmp_path: Path) -> None:
    """A repository nothing listens on (127.0.0.1:9): named with the reason; the next
    repository of the list still serves."""
    proj = project(tmp_path / "p", [HADOOP_AWS], ["http://127.0.0.1:9"])
    r = run_cli("lock", store=tmp_path / "s", project=proj)
    assert r.rc == 6, r.err
    assert (f"{HADOOP_AWS}: no repository could be reached; tried http://127.0.0.1:9 "
            "(unreachable: connection refused)") in r.err
    repo = tmp_path / "m2"
    publish(repo, HADOOP_AWS)
    with serve(repo) as url:
        project(proj, [HADOOP_AWS], ["http://127.0.0.1:9", url])
        ok = run_cli("lock", store=tmp_path / "s", project=proj)
    assert ok.rc == 0, ok.err
    assert f" {url} size=" in (proj / "layers" / "locks" / "maven.lock").read_text()


@pytest.mark.slow
def test_changed_artifact_is_refused_against_the_lock(tmp_path: Path) -> None:
    repo = tmp_path / "m2"
    old = publish(repo, HADOOP_AWS)
    with serve(repo) as url:
        proj = project(tmp_path / "p", [HADOOP_AWS], [url])
        assert run_cli("lock", store=tmp_path / "s", project=proj).rc == 0
        assert run_cli("assemble", "img", store=tmp_path / "s", project=proj).rc == 0
        # Republished under the same version, with matching checksum files.
        new = publish(repo, HADOOP_AWS, data=make_jar(HADOOP_AWS, salt="rebuilt"))
        shutil.rmtree(tmp_path / "cache")
        r = run_cli("assemble", "img", store=tmp_path / "s2", project=proj)
    assert r.rc == 4, r.err
    assert HADOOP_AWS in r.err and sha(old) in r.err and sha(new) in r.err
    assert "ociforge lock" in r.err
    assert store_is_empty(tmp_path / "s2")


@pytest.mark.slow
def test_settings_xml_credentials_reach_a_private_mirror(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "m2"
    data = publish(repo, HADOOP_AWS, checksums=("sha1", "sha256"))
    home = tmp_path / "home"
    proj = project(tmp_path / "p", [HADOOP_AWS])  # Maven Central by default …
    lock_file = proj / "layers" / "locks" / "maven.lock"
    with serve(repo, _AuthHandler) as url:
        # … which the settings.xml mirror stands in for, with its server's credentials.
        write(home / ".m2" / "settings.xml",
              SETTINGS.format(user=USER, url=url + "/", mirror_of="*"))
        monkeypatch.delenv("OCIFORGE_MAVEN_SETTINGS")  # found through $HOME
        env = {"HOME": str(home), "CORP_PW": SECRET}
        locked = run_cli("lock", store=tmp_path / "s", project=proj, env=env)
        assert locked.rc == 0, locked.err
        r = run_cli("assemble", "img", "--json", store=tmp_path / "s", project=proj, env=env)
        assert r.rc == 0, r.err
        monkeypatch.setenv("OCIFORGE_MAVEN_SETTINGS", "none")
        # Without them: exit 8, naming the repository and what it answered.
        shutil.rmtree(tmp_path / "cache")
        lock_file.unlink()
        denied = run_cli("lock", store=tmp_path / "s3", project=proj,
                         env={"OCIFORGE_MAVEN_REPOS": url})
        assert denied.rc == 8, denied.err
        assert f"tried {url} (HTTP 401, no credentials for id '127.0.0.1')" in denied.err
        wrong = run_cli("lock", store=tmp_path / "s3", project=proj,
                        env={"OCIFORGE_MAVEN_REPOS": url, "OCIFORGE_MAVEN_USERNAME": USER,
                             "OCIFORGE_MAVEN_PASSWORD": "nope"})
        assert wrong.rc == 8 and "credentials from $OCIFORGE_MAVEN_USERNAME refused" in wrong.err
        # The unqualified env pair also works for a repository named by env.
        env_ok = {"OCIFORGE_MAVEN_REPOS": url, "OCIFORGE_MAVEN_USERNAME": USER,
                  "OCIFORGE_MAVEN_PASSWORD": SECRET}
        relocked = run_cli("lock", store=tmp_path / "s4", project=proj, env=env_ok)
        assert relocked.rc == 0, relocked.err
        shutil.rmtree(tmp_path / "cache")  # the build downloads again, with credentials
        built = run_cli("assemble", "img", "--json", store=tmp_path / "s4", project=proj,
                        env=env_ok)
        assert built.rc == 0, built.err
    assert layer_members(tmp_path / "s", r.json())["opt/spark/jars/hadoop-aws-3.4.2.jar"][1] \
        == data
    lock = lock_file.read_text()
    assert f"{HADOOP_AWS} sha256:{sha(data)} {url} " in lock
    for secret in (SECRET, USER):
        for text in (lock, records_text(tmp_path / "s"), records_text(tmp_path / "s4"),
                     locked.out, locked.err, r.out, r.err, denied.err, wrong.err,
                     relocked.out, relocked.err, built.out, built.err):
            assert secret not in text


@pytest.mark.slow
def test_busy_repository_is_retried(tmp_path: Path) -> None:
    repo = tmp_path / "m2"
    publish(repo, HADOOP_AWS)
    _FlakyHandler.failures_left = 2
    with serve(repo, _FlakyHandler) as url:
        proj = project(tmp_path / "p", [HADOOP_AWS], [url])
        r = run_cli("lock", store=tmp_path / "s", project=proj)
    assert r.rc == 0, r.err
    assert _FlakyHandler.failures_left == 0


def test_lock_command_repins_and_keeps_other_entries(tmp_path: Path) -> None:
    """What `ociforge lock` calls: re-resolve, accept a changed digest, leave the lock
    entries of other layers alone."""
    repo = tmp_path / "m2"
    publish(repo, HADOOP_AWS)
    proj = tmp_path / "p"
    lock = proj / "layers" / "locks" / "maven.lock"
    update_lock(lock, {AWS_BUNDLE: LockEntry("b" * 64, "https://repo1.maven.org/maven2")})
    ctx = BuildContext(project_root=proj)
    with serve(repo) as url:
        src = MavenSource.model_validate({"kind": "maven", "lock": "layers/locks/maven.lock",
                                          "artifacts": [HADOOP_AWS], "repositories": [url]})
        with pytest.raises(LockError, match=f"maven.lock has no pin for {HADOOP_AWS}"):
            src.key_material(ctx)  # pure: never resolves
        assert src.lock(ctx)[0].changed
        first = src.key_material(ctx)
        new = publish(repo, HADOOP_AWS, data=make_jar(HADOOP_AWS, salt="2"))
        text = src.resolve(ctx)
    assert f"{HADOOP_AWS} sha256:{sha(new)} {url}" in text and AWS_BUNDLE not in text
    entries = read_lock(lock)
    assert entries[HADOOP_AWS].sha256 == sha(new) and entries[AWS_BUNDLE].sha256 == "b" * 64
    assert src.key_material(ctx) != first


@pytest.mark.slow
def test_maven_repo_flag_and_lock_command(tmp_path: Path) -> None:
    """`--maven-repo` serves recipes without a list; `ociforge lock` re-pins maven layers."""
    repo = tmp_path / "m2"
    first = publish(repo, HADOOP_AWS)
    proj = project(tmp_path / "p", [HADOOP_AWS])
    lock = proj / "layers" / "locks" / "maven.lock"
    with serve(repo) as url:
        locked = run_cli("--maven-repo", url, "lock", store=tmp_path / "s", project=proj)
        assert locked.rc == 0, locked.err
        r = run_cli("--maven-repo", url, "assemble", "img", "--json", store=tmp_path / "s",
                    project=proj)
        assert r.rc == 0, r.err
        assert f"{HADOOP_AWS} sha256:{sha(first)}" in lock.read_text()
        # The artifact is republished with other bytes: the lock refuses it until re-pinned.
        second = publish(repo, HADOOP_AWS, data=make_jar(HADOOP_AWS, salt="v2"))
        relocked = run_cli("--maven-repo", url, "lock", "addons", "--json",
                           store=tmp_path / "s", project=proj)
        assert relocked.rc == 0, relocked.err
        assert relocked.json()[0]["layer"] == "addons"
    assert f"{HADOOP_AWS} sha256:{sha(second)}" in lock.read_text()
