"""A layer's file tree in memory, and the deterministic tar writer for it.

Sources describe files into a `Tree` (path → metadata + where the bytes are); the
writer then emits them in one fixed order with normalized headers, so the tar's
bytes depend only on the tree, never on the host (owners, umask, mtimes, TZ,
directory listing order).

Rules: entries sorted by path components (a directory right before its contents);
uid/gid from the entry (0 unless assigned), empty user/group names; mtime an
integer clamped to SOURCE_DATE_EPOCH; PAX format; no atime/ctime; hardlinks kept
(the first path in order carries the data); OCI whiteouts are plain entries.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, cast

from .errors import BuildError, UnsafeArchiveError, UsageError

FILE, DIR, SYMLINK = "file", "dir", "symlink"
COPY_BUFSIZE = 1 << 20


# 9999-12-31T23:59:59Z: the last second an RFC 3339 `created` can name.
MAX_SOURCE_DATE_EPOCH = 253_402_300_799


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH from the environment (default 0), validated: the one place it
    is parsed. A bad value is a usage error (exit 2), before any work."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "0").strip() or "0"
    if not raw.isdigit() or int(raw) > MAX_SOURCE_DATE_EPOCH:
        raise UsageError(f"SOURCE_DATE_EPOCH must be an integer from 0 to "
                         f"{MAX_SOURCE_DATE_EPOCH} (9999-12-31), got {raw[:40]!r}")
    return int(raw)


def normalize_path(path: str, *, what: str = "path") -> str:
    """`/opt//spark/./jars/` → `opt/spark/jars`. Refuses `..` (names the path)."""
    parts = []
    for part in PurePosixPath("/" + path.replace("\\", "/")).parts[1:]:
        if part in ("", "."):
            continue
        if part == "..":
            raise UnsafeArchiveError(f"{what} {path!r} contains '..'")
        parts.append(part)
    return "/".join(parts)


@dataclass
class Entry:
    """One tar member to be. `src` is a path on disk or bytes, for regular files."""

    path: str
    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    mtime: int | None = None
    src: Path | bytes | None = None
    size: int = 0
    linkname: str = ""
    # Hardlink group identity: (st_dev, st_ino) from disk, or (-1, n) for archive links.
    # The first path of a group in tar order carries the data, the others link to it.
    inode: tuple[int, int] | None = None


class Tree:
    """path → Entry; later additions replace earlier ones (like a later COPY)."""

    def __init__(self, owner: tuple[int, int] = (0, 0)) -> None:
        self.entries: dict[str, Entry] = {}
        self.owner = owner

    def __len__(self) -> int:
        return len(self.entries)

    def _parents(self, path: str) -> None:
        parent = str(PurePosixPath(path).parent)
        while parent not in (".", "") and parent not in self.entries:
            self.entries[parent] = Entry(parent, DIR, 0o755, *self.owner)
            parent = str(PurePosixPath(parent).parent)

    def add(self, entry: Entry) -> None:
        entry.path = normalize_path(entry.path)
        if not entry.path:
            return  # the root itself is not an entry
        existing = self.entries.get(entry.path)
        if existing and existing.kind == DIR and entry.kind == DIR:
            existing.mode, existing.uid, existing.gid = entry.mode, entry.uid, entry.gid
            return
        if existing and existing.kind == DIR and entry.kind != DIR:
            prefix = entry.path + "/"
            for p in [p for p in self.entries if p.startswith(prefix)]:
                del self.entries[p]
        self._parents(entry.path)
        self.entries[entry.path] = entry

    def add_dir(self, path: str, mode: int = 0o755, owner: tuple[int, int] | None = None) -> None:
        uid, gid = owner or self.owner
        self.add(Entry(path, DIR, mode, uid, gid))

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644,
                  owner: tuple[int, int] | None = None) -> None:
        uid, gid = owner or self.owner
        self.add(Entry(path, FILE, mode, uid, gid, src=data, size=len(data)))

    def add_symlink(self, path: str, target: str, owner: tuple[int, int] | None = None) -> None:
        uid, gid = owner or self.owner
        self.add(Entry(path, SYMLINK, 0o777, uid, gid, linkname=target))

    def add_from_disk(
        self,
        src: Path,
        dest: str,
        *,
        owner: tuple[int, int] | None = None,
        mode: int | None = None,
        normalize_modes: bool = True,
        include: Callable[[str], bool] | None = None,
    ) -> None:
        """Add a file or a directory tree from disk under `dest`.

        With `normalize_modes` (files from a checkout, whose modes depend on the
        umask) files become 0755 if any exec bit is set else 0644, dirs 0755.
        Symlinks are kept as symlinks; ones that escape `dest`'s root are refused.
        """
        uid, gid = owner or self.owner
        src = Path(src)
        st = os.lstat(src)
        if stat.S_ISDIR(st.st_mode):
            self.add(Entry(dest, DIR, mode or 0o755, uid, gid))
            for dirpath, dirnames, filenames in os.walk(src):
                dirnames.sort()
                rel_dir = os.path.relpath(dirpath, src)
                for name in sorted(dirnames + filenames):
                    rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                    if include is not None and not include(rel):
                        continue
                    self._add_one(Path(dirpath) / name, f"{dest}/{rel}", uid, gid, None,
                                  normalize_modes)
        else:
            self._add_one(src, dest, uid, gid, mode, normalize_modes)

    def _add_one(self, src: Path, dest: str, uid: int, gid: int, mode: int | None,
                 normalize_modes: bool) -> None:
        st = os.lstat(src)
        m = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            dmode = mode if mode is not None else (0o755 if normalize_modes else m)
            self.add(Entry(dest, DIR, dmode, uid, gid))
        elif stat.S_ISLNK(st.st_mode):
            target = os.readlink(src)
            check_link_target(dest, target, what=f"symlink {src}")
            self.add(Entry(dest, SYMLINK, 0o777, uid, gid, linkname=target))
        elif stat.S_ISREG(st.st_mode):
            if mode is None:
                mode = (0o755 if m & 0o111 else 0o644) if normalize_modes else m
            inode = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
            self.add(Entry(dest, FILE, mode, uid, gid, src=src, size=st.st_size, inode=inode))
        else:
            raise BuildError(f"{src}: unsupported file type (device, socket or fifo)")

    def total_size(self) -> int:
        return sum(e.size for e in self.entries.values() if e.kind == FILE)


def check_link_target(path: str, target: str, *, what: str) -> None:
    """Refuse a link whose target resolves outside the layer root."""
    if target.startswith("/"):
        return  # absolute targets resolve inside the container's own root
    depth = len(PurePosixPath(normalize_path(path)).parent.parts)
    for part in PurePosixPath(target).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                raise UnsafeArchiveError(f"{what} -> {target!r} escapes the layer root")
        elif part not in (".", ""):
            depth += 1


MAX_LINK_HOPS = 40  # Linux's MAXSYMLINKS: a longer chain fails with ELOOP, not an escape


def link_escape(tree: Tree, path: str) -> str | None:
    """Why the symlink at `path` leaves the layer root when followed, or None.

    The target is walked one component at a time from the link's own directory;
    a component that is a symlink of the tree and has more components after it is
    followed (an absolute one restarts at the root, as inside the container), so a
    chain of links each harmless alone (`x -> .`, `y -> x/..`) is caught. `..` above
    the root is an escape; a loop is not (it resolves nowhere, ELOOP). Components
    the tree lacks are taken as directories (a lower layer may hold them).
    """
    stack = path.split("/")[:-1]
    todo = _components(tree.entries[path].linkname, stack)
    hops, via = 0, ""
    while todo:
        part = todo.pop()
        if part == "..":
            if not stack:
                return f"leaves the layer root{via}"
            stack.pop()
            continue
        stack.append(part)
        entry = tree.entries.get("/".join(stack))
        if entry is None or not todo or entry.kind == DIR:
            continue
        if entry.kind == FILE or hops == MAX_LINK_HOPS:
            return None  # ENOTDIR or ELOOP: resolves nowhere
        hops += 1
        via = f" (through symlink /{'/'.join(stack)} -> {entry.linkname!r})"
        stack.pop()
        todo += _components(entry.linkname, stack)
    return None


def _components(target: str, stack: list[str]) -> list[str]:
    """`target`'s components, reversed for popping; an absolute target empties `stack`."""
    if target.startswith("/"):
        stack.clear()
    return [p for p in reversed(target.split("/")) if p not in ("", ".")]


def check_tree(tree: Tree) -> None:
    """Refuse a tree that no extractor would read the same way, or that leads out of
    the root: an entry beneath a symlink or a file (writing it would go through the
    link), or a symlink that leaves the root when followed (see `link_escape`)."""
    for path, entry in tree.entries.items():
        parent = path.rpartition("/")[0]
        above = tree.entries.get(parent) if parent else None
        if above is not None and above.kind != DIR:
            what = f"symlink (-> {above.linkname!r})" if above.kind == SYMLINK else "file"
            raise UnsafeArchiveError(f"/{path} lies beneath /{parent}, which is a {what}; "
                                     "nothing may be written through a link or into a file")
        if entry.kind == SYMLINK:
            why = link_escape(tree, path)
            if why:
                raise UnsafeArchiveError(f"symlink /{path} -> {entry.linkname!r} {why}")


def _sort_key(path: str) -> list[str]:
    return path.split("/")


def iter_sorted(tree: Tree) -> Iterator[Entry]:
    for path in sorted(tree.entries, key=_sort_key):
        yield tree.entries[path]


class _Offset:
    """`out` with the `tell()` that tarfile's mode "w" asks for (it writes no other
    way: no seek, no read)."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._offset = 0

    def write(self, data: bytes | memoryview) -> int:
        self._out.write(data)
        self._offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self._offset


def write_tar(tree: Tree, out: IO[bytes], sde: int,
              progress: Callable[[int], None] | None = None) -> int:
    """Write the tree as a deterministic PAX tar to `out`. Returns entries written.
    The tree is checked first (`check_tree`), whichever sources filled it."""
    check_tree(tree)
    count = 0
    first_of_inode: dict[tuple[int, int], str] = {}
    # Mode "w" on a counting pass-through, not the stream mode "w|": the same bytes,
    # but headers and file blocks go straight to `out` instead of being concatenated
    # into (and sliced out of) tarfile's stream buffer, a copy of every byte.
    with tarfile.open(fileobj=cast(IO[bytes], _Offset(out)), mode="w",
                      format=tarfile.PAX_FORMAT) as tar:
        tar.copybufsize = COPY_BUFSIZE  # type: ignore[attr-defined]
        for e in iter_sorted(tree):
            ti = tarfile.TarInfo(e.path + "/" if e.kind == DIR else e.path)
            ti.mode = e.mode & 0o7777
            ti.uid, ti.gid = e.uid, e.gid
            ti.uname = ti.gname = ""
            ti.mtime = min(e.mtime if e.mtime is not None else sde, sde)
            count += 1
            if e.kind == DIR:
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            elif e.kind == SYMLINK:
                ti.type = tarfile.SYMTYPE
                ti.linkname = e.linkname
                tar.addfile(ti)
            elif e.inode is not None and e.inode in first_of_inode:
                ti.type = tarfile.LNKTYPE
                ti.linkname = first_of_inode[e.inode]
                tar.addfile(ti)
            else:
                if e.inode is not None:
                    first_of_inode[e.inode] = e.path
                ti.type = tarfile.REGTYPE
                if isinstance(e.src, bytes):
                    ti.size = len(e.src)
                    tar.addfile(ti, io.BytesIO(e.src))
                else:
                    assert e.src is not None
                    with open(e.src, "rb") as f:
                        ti.size = os.fstat(f.fileno()).st_size
                        if ti.size != e.size:
                            raise BuildError(f"{e.src} changed size while the layer was built")
                        tar.addfile(ti, f)
                if progress:
                    progress(ti.size)
    return count
