"""The downloads cache is verified on use: a file altered there is never baked into a
layer under its pin. It is quarantined and fetched again from a loopback server, or,
when the server is gone, the build stops with an integrity error (exit 4) that names
the artifact and where the altered file was moved."""

from __future__ import annotations

import hashlib
import io
import tarfile
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from maven_repo import publish
from test_pip_debian_sources import _pip_project, make_index, make_wheel

from ociforge import fetch

from conftest import Result, run_cli, write
from httpserver import serve
from registry_server import make_pki

JAR = "org.apache.hadoop:hadoop-aws:3.4.2"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OCIFORGE_MAVEN_SETTINGS", "none")
    for name in ("OCIFORGE_MAVEN_REPOS", "OCIFORGE_MAVEN_USERNAME", "OCIFORGE_MAVEN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


def _tar(path: Path, top: str, text: bytes) -> str:
    """A small .tar.gz laid out like the pyspark sdist; returns its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        ti = tarfile.TarInfo(f"{top}/deps/jars/spark-core.jar")
        ti.size = len(text)
        tar.addfile(ti, io.BytesIO(text))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _evil(tmp_path: Path, top: str) -> bytes:
    """Other bytes, still a valid archive of the same shape: what an attacker with
    write access to the cache would put there."""
    _tar(tmp_path / "evil.tgz", top, b"attacker's jar")
    return (tmp_path / "evil.tgz").read_bytes()


def _project(root: Path, source: str) -> Path:
    write(root / "layers" / "dist.yaml", source)
    write(root / "recipes" / "r.yaml", "images:\n  img:\n    layers: [dist]\n")
    return root


def _cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "downloads"


def _layers(r: Result) -> list[dict[str, Any]]:
    assert r.rc == 0, r.err
    layers: list[dict[str, Any]] = r.json()["images"][0]["layers"]
    return layers


def _assert_quarantined(tmp_path: Path, pin: str, evil: bytes) -> Path:
    """The altered file is kept in quarantine (evidence), the cache holds the pin."""
    moved = list((_cache(tmp_path) / "quarantine").iterdir())
    assert [p.name.split(".")[0] for p in moved] == [pin]
    assert moved[0].read_bytes() == evil
    return moved[0]


def _archive_source(url: str, sha: str) -> str:
    return (f"source: {{kind: archive, url: \"{url}/dist.tgz\", sha256: \"{sha}\",\n"
            "         paths: [{from: dist/deps/jars, to: /opt/spark/jars}]}\n")


def _pypi_source(sha: str) -> str:
    return ("source: {kind: pypi, package: pyspark, version: 9.9.9,\n"
            f"         filename: pyspark-9.9.9.tar.gz, sha256: \"{sha}\",\n"
            "         paths: [{from: pyspark-9.9.9/deps/jars, to: /opt/spark/jars}]}\n")


def _pypi_www(www: Path) -> str:
    sha = _tar(www / "files" / "pyspark-9.9.9.tar.gz", "pyspark-9.9.9", b"real jar")
    page = www / "simple" / "pyspark"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        f'<a href="../../files/pyspark-9.9.9.tar.gz#sha256={sha}">pyspark-9.9.9.tar.gz</a>')
    return sha


@pytest.mark.parametrize("kind", ["archive", "pypi"])
def test_altered_cached_download_is_quarantined_and_fetched_again(tmp_path: Path,
                                                                  kind: str) -> None:
    www = tmp_path / "www"
    if kind == "archive":
        sha, top = _tar(www / "dist.tgz", "dist", b"real jar"), "dist"
    else:
        sha, top = _pypi_www(www), "pyspark-9.9.9"
    evil = _evil(tmp_path, top)
    with serve(www) as url:
        proj = _project(tmp_path / "p", _archive_source(url, sha) if kind == "archive"
                        else _pypi_source(sha))
        args = ["--index-url", f"{url}/simple", "assemble", "img", "--json"]
        first = _layers(run_cli(*args, store=tmp_path / "s1", project=proj))
        cached = _cache(tmp_path) / "sha256" / sha
        cached.write_bytes(evil)
        # A fresh store builds the layer again from the downloads cache.
        again = _layers(run_cli(*args, store=tmp_path / "s2", project=proj))
    assert again == first  # the same bytes: built from what the pin names
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    _assert_quarantined(tmp_path, sha, evil)


@pytest.mark.parametrize("kind", ["archive", "pypi"])
def test_altered_cached_download_offline_is_an_integrity_error(tmp_path: Path,
                                                               kind: str) -> None:
    www = tmp_path / "www"
    if kind == "archive":
        sha, top, name = _tar(www / "dist.tgz", "dist", b"real jar"), "dist", "dist.tgz"
    else:
        sha, top, name = _pypi_www(www), "pyspark-9.9.9", "pyspark-9.9.9.tar.gz"
    with serve(www) as url:
        proj = _project(tmp_path / "p", _archive_source(url, sha) if kind == "archive"
                        else _pypi_source(sha))
        index = ["--index-url", f"{url}/simple"]
        _layers(run_cli(*index, "assemble", "img", "--json", store=tmp_path / "s1",
                        project=proj))
    evil = _evil(tmp_path, top)
    (_cache(tmp_path) / "sha256" / sha).write_bytes(evil)
    r = run_cli(*index, "assemble", "img", "--json", store=tmp_path / "s2", project=proj)
    assert r.rc == 4, r.err
    moved = _assert_quarantined(tmp_path, sha, evil)
    message = r.json()["error"]
    assert name in message and str(moved) in message and "does not match its pin" in message
    assert not (tmp_path / "s2" / "ociforge" / "layers").exists() or \
        not list((tmp_path / "s2" / "ociforge" / "layers").iterdir())


@pytest.mark.parametrize("online", [True, False])
def test_altered_cached_jar(tmp_path: Path, online: bool) -> None:
    repo = tmp_path / "m2"
    data = publish(repo, JAR, checksums=("sha1", "sha512"))
    sha = hashlib.sha256(data).hexdigest()
    write(tmp_path / "p" / "layers" / "addons.yaml",
          f"source: {{kind: maven, lock: layers/maven.lock, artifacts: [\"{JAR}\"]}}\n")
    write(tmp_path / "p" / "recipes" / "r.yaml", "images:\n  img:\n    layers: [addons]\n")
    evil = b"PK\x05\x06" + b"\0" * 18  # an empty zip: a jar with nothing in it
    with serve(repo) as url:
        env = {"OCIFORGE_MAVEN_REPOS": url}
        assert run_cli("lock", store=tmp_path / "s1", project=tmp_path / "p", env=env).rc == 0
        first = _layers(run_cli("assemble", "img", "--json", store=tmp_path / "s1",
                                project=tmp_path / "p", env=env))
        (_cache(tmp_path) / "sha256" / sha).write_bytes(evil)
        if online:
            r = run_cli("assemble", "img", "--json", store=tmp_path / "s2",
                        project=tmp_path / "p", env=env)
    if online:
        assert _layers(r) == first
        assert hashlib.sha256((_cache(tmp_path) / "sha256" / sha).read_bytes()).hexdigest() \
            == sha
    else:
        r = run_cli("assemble", "img", "--json", store=tmp_path / "s2",
                    project=tmp_path / "p", env=env)
        assert r.rc == 4, r.err
        assert JAR in r.json()["error"] and "quarantine" in r.json()["error"]
    _assert_quarantined(tmp_path, sha, evil)


def test_warm_assemble_reads_no_download(tmp_path: Path) -> None:
    """A layer found in the store is not built again, so its download is not even read:
    the cache's check costs nothing on warm runs (and an altered file is found on the
    first build that needs it)."""
    www = tmp_path / "www"
    sha = _tar(www / "dist.tgz", "dist", b"real jar")
    with serve(www) as url:
        proj = _project(tmp_path / "p", _archive_source(url, sha))
        _layers(run_cli("assemble", "img", "--json", store=tmp_path / "s", project=proj))
    cached = _cache(tmp_path) / "sha256" / sha
    cached.write_bytes(b"altered")  # hashed, it would be quarantined
    r = run_cli("assemble", "img", "--json", store=tmp_path / "s", project=proj)
    assert r.rc == 0, r.err
    assert r.json()["layers"]["built"] == []
    assert not (_cache(tmp_path) / "quarantine").exists()


def test_cached_is_the_checked_way_in(tmp_path: Path) -> None:
    """`fetch.cached` hashes: a good file is returned (and, unchanged, not hashed twice
    in one process); a file rewritten since is quarantined, even under its old name."""
    data = b"the pinned bytes"
    pin = hashlib.sha256(data).hexdigest()
    path = fetch.downloads_dir() / pin
    assert fetch.cached({"sha256": pin}) is None
    path.write_bytes(data)
    assert fetch.cached({"sha256": pin}) == path
    assert fetch.cached({"sha256": pin, "sha512": hashlib.sha512(data).hexdigest()}) == path
    # The right file with a wrong second pin: not used, but not quarantined either.
    assert fetch.cached({"sha256": pin, "sha512": "0" * 128}) is None and path.exists()
    path.write_bytes(b"the pinned bytez")  # same size, other bytes
    assert fetch.cached({"sha256": pin}) is None
    assert not path.exists()
    assert [p.read_bytes() for p in fetch.quarantine_dir().iterdir()] == [b"the pinned bytez"]


class _Immutable(SimpleHTTPRequestHandler):
    """Files served as PyPI serves them (immutable), so that pip keeps them in its
    HTTP cache."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "max-age=365000000, immutable, public")
        super().end_headers()


def test_altered_pip_cache_is_set_aside_and_fetched_again(tmp_path: Path) -> None:
    """pip checks every wheel against the lock (`--require-hashes`), its own cache's
    too; a wheel altered there is refused by pip. ociforge then sets pip's cache aside
    and installs again from the index; offline, that is exit 4 naming the package
    and where the cache went. (pip caches only HTTPS answers: a CA made here.)"""
    www = tmp_path / "www"
    wheel = make_wheel(_mkdir(www / "files"), "tinypkg", "1.0")
    make_index(www, [wheel])
    proj = _pip_project(tmp_path / "p", ["tinypkg==1.0"])
    pki = make_pki(tmp_path / "pki")
    env = {"SSL_CERT_FILE": str(pki.ca_cert)}
    pip_cache = tmp_path / "cache" / "pip"

    def alter() -> None:
        data = wheel.read_bytes()
        bodies = [p for p in pip_cache.rglob("*.body") if data in p.read_bytes()]
        assert len(bodies) == 1
        bodies[0].write_bytes(bodies[0].read_bytes().replace(data, data[:-9] + b"X" * 9))

    with serve(www, _Immutable, tls=(pki.server_cert, pki.server_key)) as url:
        locked = run_cli("--index-url", f"{url}/simple", "lock", store=tmp_path / "s1",
                         project=proj, env=env)
        assert locked.rc == 0, locked.err
        args = ["--index-url", f"{url}/simple", "assemble", "img", "--json"]
        first = _layers(run_cli(*args, store=tmp_path / "s1", project=proj, env=env))
        alter()
        again = _layers(run_cli(*args, store=tmp_path / "s2", project=proj, env=env))
        assert again == first
        assert [p.name.split(".")[0] for p in (_cache(tmp_path) / "quarantine").iterdir()] \
            == ["pip"]
    alter()  # the cache pip wrote on the second run
    r = run_cli(*args, store=tmp_path / "s3", project=proj, env=env)
    assert r.rc == 4, r.err
    message = r.json()["error"]
    assert "tinypkg==1.0" in message and "py.lock" in message
    assert str(_cache(tmp_path) / "quarantine" / "pip.") in message


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path
