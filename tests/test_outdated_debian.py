"""The Debian provider of `ociforge outdated`: a suite's versions read as apt reads
them from a repository on 127.0.0.1 (InRelease verified with a keyring by gpgv, each
Packages index checked against the verified Release), Debian version order, and a
lock's packages with newer versions, security updates flagged."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ociforge.errors import IntegrityError
from ociforge.outdated.debian import compare_lock
from ociforge.outdated.debindex import suite_versions
from ociforge.outdated.debversion import compare
from ociforge.sources.base import BuildContext

from conftest import run_cli, write
from httpserver import serve


def _gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["gpg", "--batch", "--homedir", str(home), *args], input=data,
                          capture_output=True, check=True).stdout


@pytest.fixture
def archive_key(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A throwaway archive signing key (GNUPGHOME, keyring with its public key): Debian's
    own key signs only Debian's archive."""
    if shutil.which("gpg") is None or shutil.which("gpgv") is None:
        pytest.fail("gpg/gpgv are not installed (Debian: gpg, gpgv)")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    _gpg(home, "--passphrase", "", "--quick-gen-key", "Archive <archive@example.org>",
         "ed25519", "sign", "never")
    keyring = tmp_path / "archive.gpg"
    keyring.write_bytes(_gpg(home, "--export"))
    yield home, keyring
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


def _suite(root: Path, suite: str, packages: list[tuple[str, str, str]],
           home: Path | None) -> None:
    """dists/SUITE with main/binary-amd64/Packages.gz and a Release stating its sha256,
    clear-signed into InRelease with `home`'s key (plain Release without one)."""
    text = "".join(f"Package: {n}\nVersion: {v}\nArchitecture: {a}\n"
                   f"Description: test\n stanza continued\n\n" for n, v, a in packages)
    data = gzip.compress(text.encode(), mtime=0)
    dists = root / "dists" / suite
    (dists / "main" / "binary-amd64").mkdir(parents=True)
    (dists / "main" / "binary-amd64" / "Packages.gz").write_bytes(data)
    release = (f"Suite: {suite}\nCodename: {suite}\nComponents: main\nArchitectures: amd64\n"
               f"SHA256:\n {hashlib.sha256(data).hexdigest()} {len(data)} "
               "main/binary-amd64/Packages.gz\n")
    if home is None:
        (dists / "Release").write_text(release)
    else:
        (dists / "InRelease").write_bytes(_gpg(home, "--clearsign", "--output", "-",
                                               data=release.encode()))


@pytest.fixture
def repo(tmp_path: Path, archive_key: tuple[Path, Path]) -> Iterator[dict]:
    home, keyring = archive_key
    root = tmp_path / "debian"
    _suite(root, "bookworm", [("hello", "1.0-1", "amd64"), ("tzdata", "2025a-0+deb12u1", "all"),
                              ("tini", "0.19.0-1", "amd64"), ("other", "9.9", "arm64")], home)
    _suite(root, "bookworm-security", [("hello", "1.0-1+deb12u1", "amd64")], home)
    _suite(root, "bookworm-updates", [("tzdata", "2025b-0+deb12u1", "all")], home)
    with serve(root) as url:
        yield {"url": url, "keyring": str(keyring), "root": root}


def test_suite_versions_are_read_from_verified_indexes(tmp_path: Path, repo: dict) -> None:
    ctx = BuildContext(project_root=tmp_path)
    got = suite_versions(ctx, repo["url"], "bookworm", ["main"], "amd64", repo["keyring"])
    assert got == {"hello": ["1.0-1"], "tzdata": ["2025a-0+deb12u1"], "tini": ["0.19.0-1"]}
    # Another key did not sign it.
    other = tmp_path / "other.gpg"
    other.write_bytes(b"")
    with pytest.raises(IntegrityError, match="InRelease: the signature does not verify"):
        suite_versions(ctx, repo["url"], "bookworm", ["main"], "amd64", str(other))
    # An index that is not the one the signed Release states.
    index = repo["root"] / "dists/bookworm-security/main/binary-amd64/Packages.gz"
    index.write_bytes(gzip.compress(b"Package: hello\nVersion: 9.9\nArchitecture: amd64\n"))
    with pytest.raises(IntegrityError, match="does not match the sha256 and size"):
        suite_versions(ctx, repo["url"], "bookworm-security", ["main"], "amd64",
                       repo["keyring"])


def test_debian_version_order() -> None:
    assert compare("1.0~rc1", "1.0") < 0 < compare("1.0+b1", "1.0")
    assert compare("2.36-9+deb12u14", "2.36-9+deb12u9") > 0
    assert compare("1:0.1", "9.9") > 0 and compare("1.0-1", "1.0-1.1") < 0
    assert compare("17.0.21.1+2-1~deb12u1", "17.0.19+10-1~deb12u2") > 0
    assert compare("5.2.15-2+b13", "5.2.15-2+b2") > 0 and compare("1.0", "1.0") == 0


@dataclass(frozen=True)
class Pkg:
    name: str
    version: str
    architecture: str
    suite: str


@dataclass(frozen=True)
class Lock:
    """Stands in for debianlock.DebianLock, which comes with the Debian lock work (the
    provider reads only these fields)."""

    suites: tuple[str, ...]
    architecture: str
    components: tuple[str, ...]
    packages: tuple[Pkg, ...]


def test_a_lock_is_compared_with_every_suite(tmp_path: Path, repo: dict) -> None:
    ctx = BuildContext(project_root=tmp_path)
    suites = ("bookworm", "bookworm-updates", "bookworm-security")
    indexes = {s: suite_versions(ctx, repo["url"], s, ["main"], "amd64", repo["keyring"])
               for s in suites}
    lock = Lock(suites, "amd64", ("main",), (
        Pkg("hello", "1.0-1", "amd64", "bookworm"),
        Pkg("tzdata", "2025a-0+deb12u1", "all", "bookworm"),
        Pkg("tini", "0.19.0-1", "amd64", "bookworm")))
    found = {f.name: f for f in compare_lock("debian", "base", lock, indexes)}
    assert set(found) == {"hello", "tzdata"}
    assert (found["hello"].newest, found["hello"].note) == \
        ("1.0-1+deb12u1", "security update (bookworm-security)")
    assert (found["tzdata"].newest, found["tzdata"].note) == \
        ("2025b-0+deb12u1", "from bookworm-updates")


def test_outdated_reports_a_newer_debian_package_from_the_lock(tmp_path: Path,
                                                              repo: dict) -> None:
    from ociforge.sources import debianlock

    proj = tmp_path / "proj"
    write(proj / "layers" / "base.yaml", f"""\
        source: {{kind: debian, suite: bookworm, packages: [hello], mirror: "{repo['url']}",
                  security_mirror: "{repo['url']}", keyring: "{repo['keyring']}",
                  lock: layers/locks/base.lock}}
        """)
    pkgs = tuple(debianlock.DebianPackage(n, v, "amd64", "bookworm", n, v, 1, "0" * 64,
                                          f"pool/main/{n}_{v}_amd64.deb")
                 for n, v in (("hello", "1.0-1"), ("tini", "0.19.0-1")))
    debianlock.write_lock(proj / "layers" / "locks" / "base.lock", debianlock.DebianLock(
        ("bookworm", "bookworm-updates", "bookworm-security"), "amd64", ("main",), "apt",
        ("hello",), "20261130T000000Z", pkgs))
    r = run_cli("outdated", "--json", store=tmp_path / "s", project=proj)
    assert r.rc == 10, r.err
    (finding,) = r.json()["outdated"]
    assert (finding["name"], finding["current"], finding["newest"], finding["note"]) == \
        ("hello", "1.0-1", "1.0-1+deb12u1", "security update (bookworm-security)")
