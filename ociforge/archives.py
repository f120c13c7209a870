"""Safe import of archives (tar in any compression, zip/wheel, Debian .deb) into a Tree.

Every member name is checked before anything else happens: absolute paths, `..`
components and links that escape the root are refused with the member named.
File contents are staged under counter names (`staging/0`, `staging/1`, …), never
under the member's own path, and links are kept as tree metadata only, so no
archive can make ociforge write outside its staging directory.

The .deb reader is hand-written (the ar format is a 60-byte header per member);
no maintained PyPI package reads ar streams without extracting to disk.
"""

from __future__ import annotations

import calendar
import fnmatch
import io
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

import zstandard

from .errors import BuildError, UnsafeArchiveError
from .tartree import DIR, FILE, SYMLINK, Entry, Tree, check_link_target, normalize_path

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass
class PathMap:
    """Archive path (file or directory; '' = everything) → destination in the image."""

    src: str
    dest: str
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    matched: int = 0

    def target(self, member: str) -> str | None:
        src = self.src
        if src and member != src and not member.startswith(src + "/"):
            return None
        rel = member[len(src):].lstrip("/") if src else member
        if rel:
            if self.include and not any(fnmatch.fnmatchcase(rel, p) for p in self.include):
                return None
            if any(fnmatch.fnmatchcase(rel, p) for p in self.exclude):
                return None
        dest = normalize_path(self.dest, what="destination")
        return f"{dest}/{rel}".strip("/") if rel else dest


@dataclass
class ImportStats:
    members: int = 0
    selected: int = 0
    bytes: int = 0


def member_name(raw: str, archive: str) -> str:
    """Normalize an archive member name, refusing absolute paths and `..`."""
    name = raw.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {raw!r} has an absolute path")
    if ".." in PurePosixPath(name).parts:
        raise UnsafeArchiveError(f"{archive}: member {raw!r} contains '..'")
    return normalize_path(name)


def detect_format(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"!<arch>\n"):
        return "deb"
    if head.startswith(ZSTD_MAGIC):
        return "tar.zst"
    if head[:2] == b"\x1f\x8b" or head[:6] == b"\xfd7zXZ\x00" or head[:3] == b"BZh":
        return "tar"
    if head[257:262] == b"ustar" or len(head) >= 512:
        return "tar"
    raise BuildError(f"{path}: not a recognised archive (tar, tar.gz/xz/bz2/zst, zip, deb)")


class _Bounded(io.RawIOBase):
    """A read-only window [offset, offset+size) of a file."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        self._f, self._left = f, size
        f.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._left)
        if n <= 0:
            return 0
        data = self._f.read(n)
        b[: len(data)] = data
        self._left -= len(data)
        return len(data)


def _deb_data_member(f: BinaryIO, name: str) -> tuple[str, int, int]:
    """(member name, offset, size) of data.tar.* inside a .deb (ar archive)."""
    f.seek(8)
    while True:
        header = f.read(60)
        if len(header) < 60:
            raise BuildError(f"{name}: .deb has no data.tar member")
        member = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        offset = f.tell()
        if member.startswith("data.tar"):
            return member, offset, size
        f.seek(offset + size + (size & 1))


def _open_tar_stream(raw: BinaryIO) -> tarfile.TarFile:
    head = raw.read(4)
    raw.seek(0)
    if head == ZSTD_MAGIC:
        stream = zstandard.ZstdDecompressor().stream_reader(raw, read_size=1 << 20)
        return tarfile.open(fileobj=stream, mode="r|")  # type: ignore[arg-type]
    return tarfile.open(fileobj=raw, mode="r|*", bufsize=1 << 20)


def _tar_members(path: Path, fmt: str, f: BinaryIO) -> tarfile.TarFile:
    if fmt == "deb":
        member, offset, size = _deb_data_member(f, str(path))
        window = io.BufferedReader(_Bounded(f, offset, size), buffer_size=1 << 20)
        if member.endswith(".zst"):
            stream = zstandard.ZstdDecompressor().stream_reader(window, read_size=1 << 20)
            return tarfile.open(fileobj=stream, mode="r|")  # type: ignore[arg-type]
        return tarfile.open(fileobj=window, mode="r|*", bufsize=1 << 20)
    return _open_tar_stream(f)


class _Importer:
    def __init__(self, archive: Path, maps: list[PathMap], tree: Tree, staging: Path,
                 sde: int, owner: tuple[int, int], preserve_owners: bool) -> None:
        self.archive = archive
        self.label = archive.name
        self.maps = maps or [PathMap("", "/")]
        self.tree = tree
        self.staging = staging
        self.sde = sde
        self.owner = owner
        self.preserve_owners = preserve_owners
        self.stats = ImportStats()
        self._counter = 0
        self._staged: dict[str, Path] = {}  # member name → staged file
        self._link_groups: dict[str, int] = {}
        self._dest_of: dict[str, list[str]] = {}  # member name → destinations in the tree

    def _stage(self, src: IO[bytes], name: str) -> tuple[Path, int]:
        path = self.staging / str(self._counter)
        self._counter += 1
        with open(path, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
            size = out.tell()
        self._staged[name] = path
        return path, size

    def _destinations(self, name: str) -> list[str]:
        out = []
        for m in self.maps:
            dest = m.target(name)
            if dest is not None:
                m.matched += 1
                out.append(dest)
        return out

    def _owner(self, uid: int, gid: int) -> tuple[int, int]:
        return (uid, gid) if self.preserve_owners else self.owner

    def add(self, name: str, kind: str, mode: int, mtime: int, uid: int = 0, gid: int = 0,
            data: IO[bytes] | None = None, linkname: str = "", hardlink_to: str = "") -> None:
        self.stats.members += 1
        if kind == SYMLINK:
            check_link_target(name, linkname, what=f"{self.label}: member {name!r}")
        dests = self._destinations(name)
        uid, gid = self._owner(uid, gid)
        mtime = min(int(mtime), self.sde)
        if kind == FILE and hardlink_to:
            try:
                target = member_name(hardlink_to, self.label)
            except UnsafeArchiveError:
                target = ""
            if target not in self._staged:
                raise UnsafeArchiveError(
                    f"{self.label}: member {name!r} is a hard link to {hardlink_to!r}, "
                    "which is not an earlier regular file of the archive")
            src, size = self._staged[target], self._staged[target].stat().st_size
            group = self._link_groups.setdefault(target, len(self._link_groups))
            for d in self._dest_of.get(target, []):
                self.tree.entries[d].inode = (-1, group)
            inode: tuple[int, int] | None = (-1, group)
        elif kind == FILE:
            assert data is not None
            src, size = self._stage(data, name)
            inode = None
        for dest in dests:
            self.stats.selected += 1
            if not dest:
                continue
            if kind == SYMLINK:
                check_link_target(dest, linkname, what=f"{self.label}: member {name!r}")
                self.tree.add(Entry(dest, SYMLINK, 0o777, uid, gid, mtime, linkname=linkname))
            elif kind == DIR:
                self.tree.add(Entry(dest, DIR, mode, uid, gid, mtime))
            else:
                self.stats.bytes += size
                self.tree.add(Entry(dest, FILE, mode, uid, gid, mtime, src=src, size=size,
                                    inode=inode))
                self._dest_of.setdefault(name, []).append(normalize_path(dest))

    def finish(self) -> None:
        for m in self.maps:
            if m.matched == 0:
                what = repr(m.src) if m.src else "anything"
                raise BuildError(f"{self.label}: path {what} selected by the recipe matched "
                                 "no member of the archive")


def _iter_tar(imp: _Importer, tar: tarfile.TarFile) -> None:
    for ti in tar:
        name = member_name(ti.name, imp.label)
        if not name:
            continue
        mode = ti.mode & 0o7777
        mtime = int(ti.mtime)
        if ti.isdir():
            imp.add(name, DIR, mode, mtime, ti.uid, ti.gid)
        elif ti.issym():
            imp.add(name, SYMLINK, 0o777, mtime, ti.uid, ti.gid, linkname=ti.linkname)
        elif ti.islnk():
            imp.add(name, FILE, mode, mtime, ti.uid, ti.gid, hardlink_to=ti.linkname)
        elif ti.isreg():
            f = tar.extractfile(ti)
            assert f is not None
            imp.add(name, FILE, mode, mtime, ti.uid, ti.gid, data=f)
        else:
            raise BuildError(f"{imp.label}: member {ti.name!r} is a device, fifo or other "
                             "special file, which layers do not carry")


def _iter_zip(imp: _Importer, zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        name = member_name(info.filename, imp.label)
        if not name:
            continue
        unix_mode = info.external_attr >> 16
        # Zip timestamps have no zone: read them as UTC so TZ cannot change a layer.
        mtime = calendar.timegm((*info.date_time, 0, 0, 0))
        if stat.S_ISLNK(unix_mode):
            target = zf.read(info).decode()
            imp.add(name, SYMLINK, 0o777, mtime, linkname=target)
        elif info.is_dir():
            imp.add(name, DIR, stat.S_IMODE(unix_mode) or 0o755, mtime)
        else:
            with zf.open(info) as f:
                imp.add(name, FILE, stat.S_IMODE(unix_mode) or 0o644, mtime, data=f)


def import_archive(archive: Path, tree: Tree, staging: Path, *, maps: list[PathMap],
                   sde: int, owner: tuple[int, int] = (0, 0),
                   preserve_owners: bool = False) -> ImportStats:
    """Add the selected members of `archive` to `tree`, staging file data under `staging`."""
    staging.mkdir(parents=True, exist_ok=True)
    imp = _Importer(archive, maps, tree, staging, sde, owner, preserve_owners)
    fmt = detect_format(archive)
    try:
        if fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                _iter_zip(imp, zf)
        else:
            with open(archive, "rb") as f, _tar_members(archive, fmt, f) as tar:
                _iter_tar(imp, tar)
    except (tarfile.TarError, zipfile.BadZipFile, zstandard.ZstdError, EOFError, OSError) as e:
        if isinstance(e, OSError) and not isinstance(e, EOFError) and e.errno is not None:
            raise
        raise BuildError(f"{archive.name}: damaged or truncated archive: {e}") from e
    imp.finish()
    return imp.stats


def iter_tar_names(path: Path) -> Iterator[str]:
    """Member names of a (possibly compressed) tar, for tests and inspection."""
    with open(path, "rb") as f, _open_tar_stream(f) as tar:
        for ti in tar:
            yield ti.name
