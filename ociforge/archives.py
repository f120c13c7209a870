"""Safe import of archives (tar in any compression, zip/wheel, Debian .deb) into a Tree.

Every member name is checked before anything else happens: absolute paths, `..`
components and links that escape the root are refused with the member named.
File contents are staged under counter names (`staging/0`, `staging/1`, …), never
under the member's own path, and links are kept as tree metadata only, so no
archive can make ociforge write outside its staging directory.

Each member is placed against the tree built so far: nothing is written beneath a
symlink or a file, whether in the archive's own paths or at its mapped place in the
image, and every symlink is followed through the tree's links at the end, so a chain
of links each harmless alone cannot lead out of the root (tartree.check_tree).
Names and link targets with NUL, device nodes and FIFOs are refused too; all of
these are `UnsafeArchiveError` (exit 4). setuid/setgid bits survive only where the
owner is kept and is root (see `_Importer.mode`).

Archives are read in one pass with bounded memory: the decompressor is a streaming
reader (tarfile's own `r|gz` decompresses a whole buffer without a size bound and
then re-slices it per read, which is quadratic in a highly compressed member) and
`Limits` caps what the archive may expand to and how many members it may have,
counted as it is read, so a bomb stops before the disk fills.

An archive that is damaged or not an archive at all is an `IntegrityError` (exit 4)
too: its bytes are the pinned ones, but not what the recipe says they are.

The .deb reader is hand-written (the ar format is a 60-byte header per member);
no maintained PyPI package reads ar streams without extracting to disk.
"""

from __future__ import annotations

import bz2
import calendar
import fnmatch
import gzip
import io
import lzma
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, Protocol

import zstandard

from .errors import BuildError, IntegrityError, UnsafeArchiveError
from .tartree import DIR, FILE, SYMLINK, Entry, Tree, check_link_target, check_tree, normalize_path

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COPY_CHUNK = 1 << 20
# Headers (PAX records, GNU long names) one member may carry: tarfile reads them into
# memory whole, so this bounds memory; real ones are a few KiB.
HEADER_ALLOWANCE = 16 << 20
# 8 GiB: four times the largest layer of the Spark matrix (the GPU Python layer,
# ~2 GiB expanded; the Spark distribution is ~0.5 GiB), and below the free disk of a
# common CI runner (~14 GB), so a bomb is stopped before it fills the disk.
DEFAULT_MAX_SIZE = 8 << 30
DEFAULT_MAX_MEMBERS = 1_000_000  # the largest real layer has ~13,000 entries
MAX_LINK_TARGET = 4096  # PATH_MAX: a zip symlink's target is its data, read into memory


@dataclass(frozen=True)
class Limits:
    """What one archive may expand to: bytes of data (the decompressed tar stream,
    headers included, or the zip's uncompressed members) and members of any kind."""

    max_size: int = DEFAULT_MAX_SIZE
    max_members: int = DEFAULT_MAX_MEMBERS


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
    expanded: int = 0  # bytes of member data staged, selected or not


def member_name(raw: str, archive: str) -> str:
    """Normalize an archive member name, refusing absolute paths, `..` and NUL."""
    if "\0" in raw:
        raise UnsafeArchiveError(f"{archive}: member {raw!r} has a NUL in its name")
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
    raise IntegrityError(f"{path}: not a recognised archive (tar, tar.gz/xz/bz2/zst, zip, deb)")


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
            raise IntegrityError(f"{name}: .deb has no data.tar member")
        try:
            member = header[:16].decode("ascii").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:  # UnicodeDecodeError is one
            raise IntegrityError(f"{name}: damaged .deb (a bad ar member header)") from None
        offset = f.tell()
        if member.startswith("data.tar"):
            return member, offset, size
        f.seek(offset + size + (size & 1))


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Metered(io.RawIOBase):
    """The decompressed tar stream, counted: past `limits.max_size` bytes, or past
    `header_end` (where the current member's headers must have ended), it refuses."""

    def __init__(self, inner: _Reader, label: str, limits: Limits) -> None:
        self._inner, self._label, self._limits = inner, label, limits
        self.pos = 0
        self.header_end = HEADER_ALLOWANCE

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(b))
        n = len(data)
        b[:n] = data
        self.pos += n
        if self.pos > self._limits.max_size:
            raise too_big(self._label, self._limits, "")
        if self.pos > self.header_end:
            raise UnsafeArchiveError(
                f"{self._label}: a member's headers (PAX records or GNU long names) pass "
                f"{_size(HEADER_ALLOWANCE)} at offset {self.header_end - HEADER_ALLOWANCE}")
        return n


def too_big(label: str, limits: Limits, where: str) -> UnsafeArchiveError:
    """The one message for an archive past its max_size (`where`: at which member)."""
    where = f" ({where})" if where else ""
    return UnsafeArchiveError(f"{label}: expands past {_size(limits.max_size)}, the source's "
                              f"max_size{where}; raise max_size in the recipe if the archive "
                              "is trusted")


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << (shift - 4)) == 0:
            return f"{n / (1 << shift):g} {unit} ({n} bytes)"
    return f"{n} bytes"


def _decompressed(raw: io.BufferedReader) -> _Reader:
    """The tar stream inside `raw` (by its magic), through a streaming decompressor
    that returns at most what each read asks for."""
    head = raw.peek(6)[:6]
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith((b"\xfd7zXZ\x00", b"\x5d\x00\x00\x80")):
        return lzma.LZMAFile(raw)
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if head.startswith(ZSTD_MAGIC):
        return zstandard.ZstdDecompressor().stream_reader(raw, read_size=COPY_CHUNK)
    return raw


def _open_tar(path: Path, fmt: str, f: io.BufferedReader, limits: Limits) -> _Metered:
    """The metered tar stream of `path` (for a .deb, of its data.tar member)."""
    raw = f
    if fmt == "deb":
        _, offset, size = _deb_data_member(f, str(path))
        raw = io.BufferedReader(_Bounded(f, offset, size), buffer_size=COPY_CHUNK)
    return _Metered(_decompressed(raw), path.name, limits)


def _iter_members(tar: tarfile.TarFile, stream: _Metered) -> Iterator[tarfile.TarInfo]:
    """The members of a stream-mode tar, forgetting each (tarfile keeps every header
    it has read otherwise) and moving the stream's header allowance past its data."""
    while (ti := tar.next()) is not None:
        tar.members.clear()  # type: ignore[attr-defined]
        stream.header_end = tar.offset + HEADER_ALLOWANCE
        yield ti


class _Importer:
    def __init__(self, archive: Path, maps: list[PathMap], tree: Tree, staging: Path,
                 sde: int, owner: tuple[int, int], preserve_owners: bool,
                 limits: Limits) -> None:
        self.archive = archive
        self.label = archive.name
        self.maps = maps or [PathMap("", "/")]
        self.tree = tree
        self.staging = staging
        self.sde = sde
        self.owner = owner
        self.preserve_owners = preserve_owners
        self.limits = limits
        self.stats = ImportStats()
        self._counter = 0
        self._seen = 0  # headers read, of any kind (the member cap)
        self._kinds: dict[str, str] = {}  # member name → kind, as the archive stands
        self._staged: dict[str, Path] = {}  # member name → staged file
        self._link_groups: dict[str, int] = {}
        self._dest_of: dict[str, list[str]] = {}  # member name → destinations in the tree

    def count(self, n: int = 1) -> None:
        """`n` more members read; past `max_members` the archive is refused."""
        self._seen += n
        if self._seen > self.limits.max_members:
            raise UnsafeArchiveError(
                f"{self.label}: has more than {self.limits.max_members} members, the "
                "source's max_members (raise max_members in the recipe if it is trusted)")

    def _stage(self, src: IO[bytes], name: str, declared: int) -> tuple[Path, int]:
        """Copy a member's data to disk, refusing before a byte past `max_size` is
        written (its declared size is checked first, then what actually comes)."""
        self._reserve(declared, name)
        path = self.staging / str(self._counter)
        self._counter += 1
        size = 0
        with open(path, "wb") as out:
            while chunk := src.read(COPY_CHUNK):
                self._reserve(len(chunk), name)
                self.stats.expanded += len(chunk)
                size += len(chunk)
                out.write(chunk)
        self._staged[name] = path
        return path, size

    def _reserve(self, n: int, name: str) -> None:
        if self.stats.expanded + n > self.limits.max_size:
            raise too_big(self.label, self.limits, f"at member {name!r}")

    def _destinations(self, name: str) -> list[str]:
        out = []
        for m in self.maps:
            dest = m.target(name)
            if dest is not None:
                m.matched += 1
                out.append(dest)
        return out

    def _owner(self, uid: int | None, gid: int | None) -> tuple[int, int]:
        return (uid or 0, gid or 0) if self.preserve_owners else self.owner

    def mode(self, mode: int, uid: int | None) -> int:
        """The mode a member keeps: setuid/setgid only where the archive's owner is kept
        and is root (`uid` None: the format has no owners, like zip).

        With owners remapped (the default) the bits are dropped, not refused: tarballs
        made on a workstation often carry them (a setgid project directory) and they
        mean nothing once the owner is the layer's, while a setuid file owned by uid
        1000 must never become setuid-root. With `preserve_owners` (the Debian base)
        root's setuid programs (su, passwd) and setgid directories (/var/mail) are kept
        as they are, so such layers' bytes do not change."""
        if mode & 0o6000 and not (self.preserve_owners and uid == 0):
            return mode & ~0o6000
        return mode

    def _through(self, path: str, kind_of: Callable[[str], str | None]) -> str | None:
        """The first parent of `path` that is not a directory (a symlink or a file)."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            kind = kind_of(parent)
            if kind not in (None, DIR):
                return f"{parent!r}, a {kind}"
        return None

    def _in_tree(self, path: str) -> str | None:
        entry = self.tree.entries.get(path)
        return entry.kind if entry is not None else None

    def _check_place(self, name: str, dests: list[str]) -> None:
        """Refuse a member that would be written through a link or into a file, in the
        archive's own paths or at a destination in the tree built so far."""
        blocked = self._through(name, self._kinds.get)
        if blocked:
            raise UnsafeArchiveError(f"{self.label}: member {name!r} lies beneath {blocked} "
                                     "in the archive; nothing is written through links")
        for dest in dests:
            blocked = self._through(normalize_path(dest), self._in_tree)
            if blocked:
                raise UnsafeArchiveError(
                    f"{self.label}: member {name!r} would be written to /{dest.strip('/')}, "
                    f"beneath {blocked} in the layer; nothing is written through links")

    def _hardlink(self, name: str, hardlink_to: str) -> tuple[str, Path]:
        """The member a hard link points at: an earlier regular file of the archive,
        still there, reached without going through a link."""
        try:
            target = member_name(hardlink_to, self.label)
        except UnsafeArchiveError:
            target = ""
        blocked = self._through(target, self._kinds.get) if target else None
        if target not in self._staged or blocked:
            why = f" (it lies beneath {blocked})" if blocked else ""
            raise UnsafeArchiveError(
                f"{self.label}: member {name!r} is a hard link to {hardlink_to!r}, "
                f"which is not an earlier regular file of the archive{why}")
        return target, self._staged[target]

    def add(self, name: str, kind: str, mode: int, mtime: int, uid: int | None = None,
            gid: int | None = None, data: IO[bytes] | None = None, linkname: str = "",
            hardlink_to: str | None = None, size: int = 0) -> None:
        self.stats.members += 1
        if kind == SYMLINK:
            if "\0" in linkname:
                raise UnsafeArchiveError(f"{self.label}: member {name!r} has a NUL in its "
                                         "link target")
            check_link_target(name, linkname, what=f"{self.label}: member {name!r}")
        dests = self._destinations(name)
        self._check_place(name, dests)
        mode = self.mode(mode, uid)
        uid, gid = self._owner(uid, gid)
        mtime = min(int(mtime), self.sde)
        if kind == FILE and hardlink_to is not None:
            target, src = self._hardlink(name, hardlink_to)
            size = src.stat().st_size
            group = self._link_groups.setdefault(target, len(self._link_groups))
            for d in self._dest_of.get(target, []):
                entry = self.tree.entries.get(d)
                if entry is not None and entry.src == src:
                    entry.inode = (-1, group)
            inode: tuple[int, int] | None = (-1, group)
        elif kind == FILE:
            assert data is not None
            src, size = self._stage(data, name, size)
            inode = None
        self._kinds[name] = kind
        if kind != FILE or hardlink_to is not None:
            self._staged.pop(name, None)
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


def _iter_tar(imp: _Importer, tar: tarfile.TarFile, stream: _Metered) -> None:
    for ti in _iter_members(tar, stream):
        imp.count()
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
            imp.add(name, FILE, mode, mtime, ti.uid, ti.gid, data=f, size=ti.size)
        else:
            what = "a device node" if ti.ischr() or ti.isblk() else (
                "a FIFO" if ti.isfifo() else f"of unknown type {ti.type!r}")
            raise UnsafeArchiveError(f"{imp.label}: member {ti.name!r} is {what}; layers "
                                     "carry only files, directories and links")


def _iter_zip(imp: _Importer, zf: zipfile.ZipFile) -> None:
    infos = zf.infolist()
    declared = sum(i.file_size for i in infos)
    if len(infos) > imp.limits.max_members:
        imp.count(len(infos))
    if declared > imp.limits.max_size:
        raise too_big(imp.label, imp.limits, f"its members declare {declared} bytes")
    for info in infos:
        imp.count()
        if "\0" in info.orig_filename:  # zipfile cuts the name at the NUL
            raise UnsafeArchiveError(f"{imp.label}: member {info.orig_filename!r} has a NUL "
                                     "in its name")
        name = member_name(info.filename, imp.label)
        if not name:
            continue
        unix_mode = info.external_attr >> 16
        # Zip timestamps have no zone: read them as UTC so TZ cannot change a layer.
        mtime = calendar.timegm((*info.date_time, 0, 0, 0))
        kind = stat.S_IFMT(unix_mode)
        if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
            raise UnsafeArchiveError(f"{imp.label}: member {info.filename!r} is a device "
                                     "node, FIFO or socket; layers carry only files, "
                                     "directories and links")
        if kind == stat.S_IFLNK:
            if info.file_size > MAX_LINK_TARGET:
                raise UnsafeArchiveError(f"{imp.label}: member {info.filename!r} is a "
                                         f"symlink with a target over {MAX_LINK_TARGET} bytes")
            target = zf.read(info).decode("utf-8", "surrogateescape")
            imp.add(name, SYMLINK, 0o777, mtime, linkname=target)
        elif info.is_dir():
            imp.add(name, DIR, stat.S_IMODE(unix_mode) or 0o755, mtime)
        else:
            with zf.open(info) as f:
                imp.add(name, FILE, stat.S_IMODE(unix_mode) or 0o644, mtime, data=f,
                        size=info.file_size)


def import_archive(archive: Path, tree: Tree, staging: Path, *, maps: list[PathMap],
                   sde: int, owner: tuple[int, int] = (0, 0),
                   preserve_owners: bool = False, limits: Limits = Limits()) -> ImportStats:
    """Add the selected members of `archive` to `tree`, staging file data under `staging`.
    Unsafe content raises UnsafeArchiveError naming the member (see the module doc)."""
    staging.mkdir(parents=True, exist_ok=True)
    imp = _Importer(archive, maps, tree, staging, sde, owner, preserve_owners, limits)
    fmt = detect_format(archive)
    try:
        if fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                _iter_zip(imp, zf)
        else:
            with open(archive, "rb") as f, \
                    _open_tar(archive, fmt, f, limits) as stream, \
                    tarfile.open(fileobj=stream, mode="r|") as tar:
                _iter_tar(imp, tar, stream)
    except (tarfile.TarError, zipfile.BadZipFile, zstandard.ZstdError, EOFError, OSError,
            lzma.LZMAError) as e:
        if isinstance(e, OSError) and not isinstance(e, EOFError) and e.errno is not None:
            raise
        raise IntegrityError(f"{archive.name}: damaged or truncated archive: {e}") from e
    except RecursionError:  # tarfile follows a chain of extended headers recursively
        raise UnsafeArchiveError(f"{archive.name}: a chain of thousands of extended "
                                 "headers") from None
    imp.finish()
    try:
        check_tree(tree)
    except UnsafeArchiveError as e:
        raise UnsafeArchiveError(f"{archive.name}: {e}") from None
    return imp.stats


def iter_tar_names(path: Path, limits: Limits = Limits()) -> Iterator[str]:
    """Member names of a (possibly compressed) tar, for tests and inspection."""
    with open(path, "rb") as f, \
            _open_tar(path, "tar", f, limits) as stream, \
            tarfile.open(fileobj=stream, mode="r|") as tar:
        for ti in _iter_members(tar, stream):
            yield ti.name
