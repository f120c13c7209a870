"""What the native checks need from one layer, read once per layer and cached in the
store by diff_id (`ociforge/checks/`), as the SBOM's layer scans are.

A listing depends only on the layer's bytes, and the matrix's images share most of
their layers, so `ociforge test --all` streams each distinct layer once instead of
once per image (a GPU image's 2 GB Python layer takes ~20 s to decompress).
Cached per layer: every tar header, and for each small regular file only whether its
content looks like a secret (contents are not kept: a Python layer has tens of
thousands of small files). Jar class lists are cached per (layer, jar pattern,
packages), and the few small files whose text a `contains` check reads per (layer,
set of paths).

A listing is written only after its layer streamed to the end and matched its
diff_id; one that does not parse, or names another layer or version, is ignored and
the layer read again.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import json
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..digests import digest_hex
from ..image import StoredLayer
from ..store import Store, atomic_write

# Bumped when what a listing records changes: older cached listings are then ignored.
INDEX_VERSION = 1
SMALL = 64 * 1024  # files up to this size are read (secret scan, `contains` checks)
SPOOL = 64 * 1024 * 1024


@dataclass
class Node:
    """One path of a layer, or of an image's merged filesystem (see imagefs)."""

    path: str          # absolute, e.g. /opt/spark
    kind: str          # file, dir, symlink, hardlink, other
    mode: int
    uid: int
    gid: int
    size: int
    linkname: str = ""
    content: bytes | None = None
    secret: bool = False   # a small file whose content looks like a secret
    layer: int = -1        # in an image: index of the layer it comes from (bottom = 0)


def _node(row: list[Any]) -> Node:
    path, kind, mode, uid, gid, size, linkname, secret = row
    return Node(str(path), str(kind), int(mode), int(uid), int(gid), int(size), str(linkname),
                secret=bool(secret))


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


def _members(layer: StoredLayer) -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str]]:
    """Every member of the layer with its absolute path (the digests checked at the end)."""
    with layer.uncompressed() as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for ti in tar:
            yield tar, ti, "/" + ti.name.strip("/").removeprefix("./")


class LayerIndex:
    """Listings of layers, cached in `store` (None: not cached). `secret` is the
    content pattern of the secret check; a listing made with another one is not used."""

    def __init__(self, store: Store | None, secret: re.Pattern[bytes]) -> None:
        self.store = store
        self.secret = secret
        self.scanned = 0   # layers streamed for listings (the rest came from the cache)
        self._tag = hashlib.sha256(json.dumps([INDEX_VERSION, SMALL, secret.pattern.decode()]
                                              ).encode()).hexdigest()[:12]

    # -- the cache ---------------------------------------------------------------------

    def _path(self, layer: StoredLayer, what: str) -> Path | None:
        if self.store is None:
            return None
        return self.store.meta_dir / "checks" / f"{digest_hex(layer.diff_id)}-{what}.json"

    def _cached(self, layer: StoredLayer, what: str) -> Any:
        path = self._path(layer, what)
        if path is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads(path.read_bytes())
            if isinstance(doc, dict) and doc.get("v") == INDEX_VERSION and \
                    doc.get("diff_id") == layer.diff_id and doc.get("what") == what:
                return doc["data"]
        return None

    def _keep(self, layer: StoredLayer, what: str, data: Any) -> None:
        path = self._path(layer, what)
        if path is None or self.store is None:
            return
        doc = {"v": INDEX_VERSION, "diff_id": layer.diff_id, "what": what, "data": data}
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # a read-only store still checks, uncached
            atomic_write(path, json.dumps(doc, separators=(",", ":")).encode(),
                         self.store.tmp_dir, durable=False)  # checked when read

    # -- listings ----------------------------------------------------------------------

    def entries(self, layer: StoredLayer) -> list[Node]:
        """Every member of `layer`, in tar order (whiteouts included)."""
        what = f"entries-{self._tag}"
        cached = self._cached(layer, what)
        if isinstance(cached, list):
            with contextlib.suppress(TypeError, ValueError):
                return [_node(row) for row in cached]
        out = []
        self.scanned += 1
        for tar, ti, path in _members(layer):
            secret = False
            if ti.isreg() and ti.size <= SMALL:
                f = tar.extractfile(ti)
                secret = bool(f and self.secret.search(f.read()))
            out.append(Node(path, _kind(ti), ti.mode, ti.uid, ti.gid, ti.size, ti.linkname,
                            secret=secret))
        self._keep(layer, what, [[n.path, n.kind, n.mode, n.uid, n.gid, n.size, n.linkname,
                                  n.secret] for n in out])
        return out

    def jar_classes(self, layer: StoredLayer, pattern: str, prefixes: tuple[str, ...]
                    ) -> dict[str, list[str]]:
        """jar path -> its classes under `prefixes` (META-INF excluded), for every
        regular file of `layer` whose path matches `pattern`."""
        key = hashlib.sha256(json.dumps([pattern, sorted(prefixes)]).encode()).hexdigest()[:12]
        what = f"jars-{key}"
        cached = self._cached(layer, what)
        if isinstance(cached, dict):
            return {str(k): [str(c) for c in v] for k, v in cached.items()}
        found: dict[str, list[str]] = {}
        for tar, ti, path in _members(layer):
            if ti.isreg() and fnmatch.fnmatchcase(path, pattern):
                f = tar.extractfile(ti)
                if f is not None:
                    found[path] = sorted(_classes(f, prefixes))
        self._keep(layer, what, found)
        return found

    def contents(self, layer: StoredLayer, paths: set[str]) -> dict[str, bytes]:
        """The bytes of these small regular files of `layer` (a handful of
        configuration files per image, cached per set of paths)."""
        key = hashlib.sha256(json.dumps(sorted(paths)).encode()).hexdigest()[:12]
        what = f"contents-{key}"
        cached = self._cached(layer, what)
        if isinstance(cached, dict):
            with contextlib.suppress(TypeError, ValueError):
                return {str(k): base64.b64decode(v, validate=True) for k, v in cached.items()}
        out: dict[str, bytes] = {}
        for tar, ti, path in _members(layer):
            if path in paths and ti.isreg() and ti.size <= SMALL:
                f = tar.extractfile(ti)
                if f is not None:
                    out[path] = f.read()
        self._keep(layer, what, {k: base64.b64encode(v).decode() for k, v in out.items()})
        return out


def _classes(member: IO[bytes], prefixes: tuple[str, ...]) -> set[str]:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL) as tmp:
        shutil.copyfileobj(member, tmp, 1024 * 1024)
        tmp.seek(0)
        try:
            names = zipfile.ZipFile(tmp).namelist()
        except zipfile.BadZipFile:
            return set()
    return {n for n in names if n.endswith(".class") and not n.startswith("META-INF/")
            and n.startswith(prefixes)}
