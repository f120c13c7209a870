"""`files`: files and directories from this repository (entrypoints, conf, scripts)."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from ..errors import RecipeError
from ..spec import ProjectEntry
from ..tartree import FILE, Tree
from .base import BuildContext, Mode, Owner, SourceBase, Spec


def _excluding(patterns: list[str]) -> Callable[[str], bool]:
    return lambda rel: not any(fnmatch.fnmatchcase(rel, p) for p in patterns)


class FileItem(Spec):
    src: ProjectEntry  # a symlink here is copied as a symlink, never followed
    dest: str
    mode: Mode = None
    owner: Owner | None = None
    exclude: list[str] = []


class DirItem(Spec):
    path: str
    mode: Mode = None
    owner: Owner | None = None


class SymlinkItem(Spec):
    path: str
    target: str


class FilesSource(SourceBase):
    kind: Literal["files"]
    files: list[FileItem] = []
    dirs: list[DirItem] = []
    symlinks: list[SymlinkItem] = []

    def populate(self, tree: Tree, ctx: BuildContext, workdir: Path) -> dict[str, Any]:
        self._fill(tree, ctx)
        return {"files": [{"src": i.src, "dest": i.dest} for i in self.files]}

    def _fill(self, tree: Tree, ctx: BuildContext) -> None:
        """The layer's entries, files referenced on disk (nothing is copied)."""
        for d in self.dirs:
            tree.add_dir(d.path, d.mode or 0o755, d.owner)
        for item in self.files:
            src = ctx.project_path(item.src, follow_last=False)
            if not src.exists() and not src.is_symlink():
                raise RecipeError(f"files source: {item.src} does not exist "
                                  f"(paths are relative to {ctx.project_root})")
            tree.add_from_disk(src, item.dest, owner=item.owner, mode=item.mode,
                               include=_excluding(item.exclude) if item.exclude else None)
        for s in self.symlinks:
            tree.add_symlink(s.path, s.target)

    def hash_checkout(self, ctx: BuildContext) -> None:
        self.key_material(ctx)

    def key_material(self, ctx: BuildContext) -> dict[str, Any]:
        """The layer's content itself: every entry's metadata and file digest."""
        tree = Tree(owner=(0, 0))
        self._fill(tree, ctx)
        entries = []
        for path in sorted(tree.entries):
            e = tree.entries[path]
            digest = ""
            if e.kind == FILE:
                if isinstance(e.src, bytes):
                    digest = hashlib.sha256(e.src).hexdigest()
                else:
                    assert e.src is not None
                    digest = ctx.digests.sha256(e.src)
            entries.append([path, e.kind, e.mode, e.uid, e.gid, e.linkname, digest])
        return {"kind": "files", "entries": entries}
