"""An image's final filesystem, from its layers' tar headers (whiteouts applied).

Only headers are kept (and small file contents on request), so checking a 1 GB image
streams it once and holds a few MB.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

from ..image import StoredImage


@dataclass
class Node:
    path: str          # absolute, e.g. /opt/spark
    kind: str          # file, dir, symlink, hardlink, other
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str = ""
    content: bytes | None = None


def _kind(ti: tarfile.TarInfo) -> str:
    if ti.isdir():
        return "dir"
    if ti.issym():
        return "symlink"
    if ti.islnk():
        return "hardlink"
    if ti.isreg():
        return "file"
    return "other"


def load(image: StoredImage,
         want_content: Callable[[str, int], bool] | None = None,
         visit: Callable[[str, IO[bytes]], None] | None = None) -> dict[str, Node]:
    """path → Node for the image's merged filesystem. `visit` sees every regular
    file's path and content as it streams past (so other readers of the layers, such
    as the duplicate-class check, need no pass of their own)."""
    fs: dict[str, Node] = {}
    for tar, ti, path in members(image):
        name = PurePosixPath(path).name
        parent = str(PurePosixPath(path).parent)
        if name == ".wh..wh..opq":
            prefix = parent.rstrip("/") + "/"
            for p in [p for p in fs if p.startswith(prefix)]:
                del fs[p]
            continue
        if name.startswith(".wh."):
            gone = f"{parent.rstrip('/')}/{name[4:]}"
            for p in [p for p in fs if p == gone or p.startswith(gone + "/")]:
                del fs[p]
            continue
        node = Node(path, _kind(ti), ti.mode, ti.uid, ti.gid, ti.size,
                    ti.linkname)
        if ti.isreg() and want_content and want_content(path, ti.size):
            f = tar.extractfile(ti)
            node.content = f.read() if f else None
        if ti.isreg() and visit is not None:
            member = io.BytesIO(node.content) if node.content is not None \
                else tar.extractfile(ti)
            if member is not None:
                visit(path, member)
        fs[path] = node
    return fs


def members(image: StoredImage) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str]]:
    """Every tar member of every layer (with its absolute path), bottom layer first,
    streamed once (each layer's digests checked at its end)."""
    for layer in image.layers:
        with layer.uncompressed() as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for ti in tar:
                yield tar, ti, "/" + ti.name.strip("/").removeprefix("./")
