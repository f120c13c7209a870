"""A real, signed Debian archive on disk for tests: small `.deb`s made with dpkg-deb,
`Packages` indexes by dpkg-scanpackages, `Release` files signed (InRelease) with a
throwaway OpenPGP key made here, laid out as Debian's two archives are:

    ROOT/debian/dists/{SUITE,SUITE-updates}/main/binary-amd64/Packages
    ROOT/debian-security/dists/SUITE-security/main/binary-amd64/Packages
    ROOT/<archive>/pool/main/<name>_<version>_<arch>.deb
"""

from __future__ import annotations

import email.utils
import hashlib
import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from conftest import need_tool


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    path: Path


def make_deb(dest: Path, name: str, version: str, depends: str = "",
             files: dict[str, str] | None = None) -> Deb:
    """A real binary package: control file plus `files` (path → text)."""
    need_tool("dpkg-deb")
    root = dest / f"build-{name}-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    control = (f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
               f"Maintainer: Test <test@example.invalid>\nPriority: optional\n"
               f"Section: misc\nDescription: test package {name}\n")
    if depends:
        control += f"Depends: {depends}\n"
    (root / "DEBIAN" / "control").write_text(control)
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    out = dest / f"{name}_{version}_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root),
                    str(out)], check=True, capture_output=True,
                   env={"SOURCE_DATE_EPOCH": "1700000000", "PATH": "/usr/bin:/bin"})
    shutil.rmtree(root)
    return Deb(name, version, out)


class Signer:
    """A throwaway signing key in its own GNUPGHOME; `keyring` is its public key as
    apt's `signed-by` takes it."""

    def __init__(self, home: Path) -> None:
        need_tool("gpg")
        self.home = home
        home.mkdir(mode=0o700, parents=True)
        self._gpg("--quick-gen-key", "ociforge test archive <archive@example.invalid>",
                  "ed25519", "sign", "never")
        self.keyring = home / "archive-keyring.gpg"
        self.keyring.write_bytes(self._gpg("--export"))

    def _gpg(self, *args: str, data: bytes | None = None) -> bytes:
        return subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--quiet",
                               "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              input=data, capture_output=True, check=True).stdout

    def close(self) -> None:
        """Stop the gpg-agent this home started."""
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
                       capture_output=True, check=False)

    def clearsign(self, text: bytes) -> bytes:
        return self._gpg("--clearsign", "--digest-algo", "SHA256", data=text)


class Archive:
    """Debian's two archives (`debian`, `debian-security`) under one root; `publish`
    adds packages to a suite and re-signs it."""

    def __init__(self, root: Path, signer: Signer, suite: str = "bookworm") -> None:
        need_tool("dpkg-scanpackages")
        self.root, self.signer, self.suite = root, signer, suite
        self.suites: dict[str, list[Deb]] = {s: [] for s in self.suite_names()}
        for s in self.suites:
            self._index(s)

    def suite_names(self) -> list[str]:
        return [self.suite, f"{self.suite}-updates", f"{self.suite}-security"]

    @staticmethod
    def archive(suite: str) -> str:
        return "debian-security" if suite.endswith("-security") else "debian"

    def publish(self, suite: str, *debs: Deb) -> None:
        pool = self.root / self.archive(suite) / "pool" / "main"
        pool.mkdir(parents=True, exist_ok=True)
        for d in debs:
            shutil.copyfile(d.path, pool / d.path.name)
        self.suites[suite] += debs
        self._index(suite)

    def withdraw(self, deb: Deb) -> None:
        """Remove a version from the pool and from every index (a mirror after the
        version was superseded)."""
        (self.root / self.archive_of(deb) / "pool" / "main" / deb.path.name).unlink()
        for suite, debs in self.suites.items():
            if deb in debs:
                debs.remove(deb)
                self._index(suite)

    def archive_of(self, deb: Deb) -> str:
        return next(self.archive(s) for s, debs in self.suites.items() if deb in debs)

    def _index(self, suite: str) -> None:
        top = self.root / self.archive(suite)
        dists = top / "dists" / suite
        binary = dists / "main" / "binary-amd64"
        binary.mkdir(parents=True, exist_ok=True)
        listing = top / f".{suite}.list"
        listing.write_text("".join(f"pool/main/{d.path.name}\n" for d in self.suites[suite]))
        packages = b""
        if self.suites[suite]:
            # dpkg-scanpackages reads a directory; give it one holding only this suite's files.
            view = top / f".view-{suite}"
            shutil.rmtree(view, ignore_errors=True)
            (view / "pool" / "main").mkdir(parents=True)
            for d in self.suites[suite]:
                (view / "pool" / "main" / d.path.name).symlink_to(
                    top / "pool" / "main" / d.path.name)
            packages = subprocess.run(["dpkg-scanpackages", "--multiversion", "pool"],
                                      cwd=view, capture_output=True, check=True).stdout
            shutil.rmtree(view)
        (binary / "Packages").write_bytes(packages)
        sha = hashlib.sha256(packages).hexdigest()
        release = textwrap.dedent(f"""\
            Origin: Debian
            Label: Debian
            Suite: {suite}
            Codename: {suite}
            Date: {email.utils.formatdate(usegmt=True)}
            Architectures: amd64
            Components: main
            SHA256:
             {sha} {len(packages)} main/binary-amd64/Packages
            """).encode()
        (dists / "Release").write_bytes(release)
        (dists / "InRelease").write_bytes(self.signer.clearsign(release))


def snapshot_copy(archive: Archive, dest: Path, timestamp: str) -> None:
    """A snapshot-archive layout (`ARCHIVE/TIMESTAMP/pool/...`) of every file the
    archive holds now, as snapshot.debian.org keeps them."""
    for name in ("debian", "debian-security"):
        src = archive.root / name / "pool"
        if src.exists():
            shutil.copytree(src, dest / name / timestamp / "pool")
