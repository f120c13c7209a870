"""The `debian` source's lock file: every package of the root filesystem, as apt
resolved it from the signed indexes of the layer's suites, one line per package.

    # suites: bookworm bookworm-updates bookworm-security
    # architecture: amd64
    # components: main
    # variant: apt
    # include: bash ca-certificates …
    # resolved: 20261130T094512Z
    # packages: 142 sha256:<digest of the package lines>
    NAME VERSION ARCH SUITE SOURCE SOURCE-VERSION SIZE sha256:<hex> FILENAME

The header says what the lock was resolved for (`check_lock` compares it with the
layer definition, without the network) and when (`resolved`: the time of the
snapshot archive to fall back to when the mirror has dropped a version). `SUITE`
is where the version came from: the security suite when the security archive has
it, else the updates suite, else the release suite. `FILENAME` and the sha256 are
the index's, so a build fetches exactly these `.deb`s. `outdated` and the SBOM read
locks through `read_lock` and `DebianPackage`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import LockError
from ..store import atomic_write

LOCK_HEADER = (
    "# ociforge debian lock: every package of the layer as apt resolved it from the\n"
    "# signed indexes of its suites. Written by `ociforge lock`, refreshed by\n"
    "# `ociforge lock --update LAYER`; commit it.")
COLUMNS = "# name version architecture suite source source-version size sha256 filename"
_TIMESTAMP = re.compile(r"^\d{8}T\d{6}Z$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]*$")
_VERSION = re.compile(r"^[0-9A-Za-z.+~:-]+$")


@dataclass(frozen=True)
class DebianPackage:
    """One installed package as the lock pins it: the binary package at an exact
    version and architecture, the suite whose signed index listed it, its source
    package, and the `.deb` (path under the archive root, size, sha256)."""

    name: str
    version: str
    architecture: str
    suite: str
    source: str
    source_version: str
    size: int
    sha256: str
    filename: str

    @property
    def security(self) -> bool:
        """From the security archive (a security update)."""
        return self.suite.endswith("-security")

    def pin(self) -> str:
        """What the layer's key is made of: the bytes, not where they were found."""
        return f"{self.name} {self.version} {self.architecture} sha256:{self.sha256}"

    def line(self) -> str:
        return (f"{self.name} {self.version} {self.architecture} {self.suite} {self.source} "
                f"{self.source_version} {self.size} sha256:{self.sha256} {self.filename}")


@dataclass(frozen=True)
class DebianLock:
    """A whole lock: what it was resolved for, when, and its packages (by name)."""

    suites: tuple[str, ...]
    architecture: str
    components: tuple[str, ...]
    variant: str
    include: tuple[str, ...]
    resolved: str  # YYYYMMDDTHHMMSSZ, UTC
    packages: tuple[DebianPackage, ...]

    def digest(self) -> str:
        return _digest(p.line() for p in self.packages)

    def by_name(self) -> dict[str, DebianPackage]:
        return {p.name: p for p in self.packages}


def _digest(lines: Iterable[str]) -> str:
    return "sha256:" + hashlib.sha256("".join(f"{x}\n" for x in lines).encode()).hexdigest()


def render_lock(lock: DebianLock) -> str:
    packages = sorted(lock.packages, key=lambda p: (p.name, p.architecture))
    lines = [LOCK_HEADER,
             f"# suites: {' '.join(lock.suites)}",
             f"# architecture: {lock.architecture}",
             f"# components: {' '.join(lock.components)}",
             f"# variant: {lock.variant}",
             f"# include: {' '.join(sorted(lock.include))}",
             f"# resolved: {lock.resolved}",
             f"# packages: {len(packages)} {_digest(p.line() for p in packages)}",
             COLUMNS]
    lines += [p.line() for p in packages]
    return "\n".join(lines) + "\n"


def write_lock(path: Path, lock: DebianLock) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render_lock(lock).encode())


def _package(path: Path, n: int, line: str) -> DebianPackage:
    f = line.split()
    ok = (len(f) == 9 and _NAME.match(f[0]) and _VERSION.match(f[1]) and _NAME.match(f[2])
          and _NAME.match(f[3]) and f[6].isdigit()
          and re.fullmatch(r"sha256:[0-9a-f]{64}", f[7]) and _NAME.match(f[4])
          and _VERSION.match(f[5]) and f[8].endswith(".deb") and ".." not in f[8].split("/")
          and not f[8].startswith("/"))
    if not ok:
        raise LockError(f"{path}:{n}: not a lock line ({COLUMNS[2:]})")
    return DebianPackage(f[0], f[1], f[2], f[3], f[4], f[5], int(f[6]), f[7][7:], f[8])


def read_lock(path: Path) -> DebianLock:
    """Parse a lock file; a LockError names the file and line of anything else
    (a missing file too: the caller says which `ociforge lock` to run)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LockError(f"{path} is missing") from None
    header: dict[str, str] = {}
    packages: list[DebianPackage] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        m = re.match(r"^# ([a-z]+): (.*)$", line)
        if m:
            header[m.group(1)] = m.group(2).strip()
        elif line and not line.startswith("#"):
            packages.append(_package(path, n, line))
    missing = [k for k in ("suites", "architecture", "components", "variant", "include",
                           "resolved", "packages") if k not in header]
    if missing:
        raise LockError(f"{path}: the header lacks {', '.join(missing)}")
    if not _TIMESTAMP.match(header["resolved"]):
        raise LockError(f"{path}: resolved {header['resolved']!r} is not YYYYMMDDTHHMMSSZ")
    lock = DebianLock(tuple(header["suites"].split()), header["architecture"],
                      tuple(header["components"].split()), header["variant"],
                      tuple(header["include"].split()), header["resolved"], tuple(packages))
    count, _, digest = header["packages"].partition(" ")
    if count != str(len(packages)) or digest != lock.digest():
        raise LockError(f"{path}: its package lines do not match its `# packages:` line "
                        f"({count} packages, {digest}): edited or truncated")
    names = [(p.name, p.architecture) for p in packages]
    if len(set(names)) != len(names):
        raise LockError(f"{path}: a package is pinned twice")
    return lock


@dataclass(frozen=True)
class PackageChange:
    """One package that differs between two locks: `old`/`new` is None where the
    package is only in the other lock."""

    name: str
    old: DebianPackage | None
    new: DebianPackage | None

    @property
    def security(self) -> bool:
        """The new version comes from the security archive."""
        return self.new is not None and self.new.security


def compare(old: DebianLock, new: DebianLock) -> list[PackageChange]:
    """The packages whose pin differs (version, or bytes), added or removed, by name
    (what `lock --update` moved; what `outdated` reports from a fresh resolve)."""
    a, b = old.by_name(), new.by_name()
    return [PackageChange(n, a.get(n), b.get(n)) for n in sorted(a.keys() | b.keys())
            if a.get(n) is None or b.get(n) is None or a[n].pin() != b[n].pin()]


# -- reading apt's indexes --------------------------------------------------------------


def paragraphs(text: str) -> Iterator[dict[str, str]]:
    """The paragraphs of a deb822 file (Packages, Release, a dpkg status file) as
    {field: value}, continuation lines joined to their field with newlines."""
    fields: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, ""
        elif line[0] in " \t" and last:
            fields[last] += "\n" + line.strip()
        elif ":" in line:
            last, _, value = line.partition(":")
            fields[last] = value.strip()
    if fields:
        yield fields


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    architecture: str


def pin_installed(installed: Iterable[Installed], indexes: dict[str, list[Path]],
                  suites: tuple[str, ...]) -> list[DebianPackage]:
    """Join the installed packages with the signed Packages indexes apt fetched
    (`indexes`: suite → its Packages files). A version in several suites is taken
    from the last suite listed (security before updates before the release)."""
    want = {(i.name, i.version, i.architecture) for i in installed}
    found: dict[tuple[str, str, str], DebianPackage] = {}
    for suite in suites:  # later suites override earlier ones
        for index in indexes.get(suite, []):
            for f in paragraphs(index.read_text(errors="replace")):
                key = (f.get("Package", ""), f.get("Version", ""), f.get("Architecture", ""))
                if key not in want or "SHA256" not in f or "Filename" not in f:
                    continue
                src, _, srcver = f.get("Source", key[0]).partition(" ")
                found[key] = DebianPackage(key[0], key[1], key[2], suite, src,
                                           srcver.strip("()") or key[1], int(f["Size"]),
                                           f["SHA256"], f["Filename"])
    absent = sorted(f"{n}={v}" for n, v, _ in want - found.keys())
    if absent:
        raise LockError(f"installed but in no index of {', '.join(suites)}: "
                        f"{', '.join(absent)}")
    return sorted(found.values(), key=lambda p: p.name)
