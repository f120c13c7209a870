"""What a stored layer holds that its record does not say: jar names, versions and
Maven coordinates, checksums of repository files, the dpkg status file.

Read from the layer blob ociforge itself wrote (never from a running container),
in one streaming pass. The result depends only on the layer's content, so it is
cached in the store by diff_id (`ociforge/sbom/`); a second SBOM of any image that
shares the layer costs a file read.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..digests import digest_hex
from ..image import StoredLayer
from ..store import Store, atomic_write

# Bumped when what a scan records changes: older cached scans are then ignored.
SCAN_VERSION = 1
DPKG_STATUS = "var/lib/dpkg/status"
# A jar bigger than this is hashed but not opened (its coordinates come from its name).
MAX_JAR_BYTES = 512 << 20


@dataclass(frozen=True)
class Want:
    """What to collect from one layer."""

    jars: bool = False
    files: bool = False
    dpkg: bool = False

    def tag(self) -> str:
        return "".join(c for c, on in (("j", self.jars), ("f", self.files), ("d", self.dpkg))
                       if on)


def scan_path(store: Store, diff_id: str, want: Want) -> Path:
    """Where the scan of layer `diff_id` for `want` is cached (a layer cache in a
    registry carries this file, so an SBOM needs no layer bytes on another machine)."""
    return store.meta_dir / "sbom" / f"{digest_hex(diff_id)}-{want.tag()}.json"


def scan_layer(store: Store, layer: StoredLayer, want: Want) -> dict[str, Any]:
    """{"jars": [...], "files": [...], "dpkg_status": str | None} of one layer (the
    result is cached in `store` by diff_id)."""
    diff_id = layer.diff_id
    cache = scan_path(store, diff_id, want)
    with contextlib.suppress(OSError, ValueError):
        cached = json.loads(cache.read_bytes())
        if cached.get("v") == SCAN_VERSION and cached.get("diff_id") == diff_id:
            return dict(cached)
    result = _scan(layer, want)
    result.update({"v": SCAN_VERSION, "diff_id": diff_id})
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cache, json.dumps(result, sort_keys=True).encode(), store.tmp_dir)
    return result


def _scan(layer: StoredLayer, want: Want) -> dict[str, Any]:
    jars: dict[str, dict[str, Any]] = {}
    files: dict[str, dict[str, Any]] = {}
    status: str | None = None
    with layer.uncompressed() as reader, tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            path = _norm(member.name)
            base = path.rsplit("/", 1)[-1]
            if base.startswith(".wh."):
                continue
            if member.islnk():  # a hardlink: same content as a path already seen
                target = _norm(member.linkname)
                for seen in (jars, files):
                    if target in seen:
                        seen[path] = {**seen[target], "path": "/" + path}
                continue
            if not member.isfile():
                continue
            is_jar = want.jars and base.endswith(".jar")
            is_status = want.dpkg and path == DPKG_STATUS
            if not (is_jar or want.files or is_status):
                continue
            f = tar.extractfile(member)
            assert f is not None
            if is_jar and member.size <= MAX_JAR_BYTES:
                data = f.read()
                jars[path] = {"path": "/" + path, "size": member.size,
                              "sha256": hashlib.sha256(data).hexdigest(),
                              "poms": pom_coordinates(data)}
                if want.files:
                    files[path] = _file_entry(path, io.BytesIO(data), member.size)
                continue
            if is_status:
                status = f.read().decode("utf-8", "replace")
                continue
            entry = _file_entry(path, f, member.size)
            if is_jar:
                jars[path] = {"path": "/" + path, "size": member.size,
                              "sha256": entry["sha256"], "poms": []}
            if want.files:
                files[path] = entry
    return {"jars": [jars[k] for k in sorted(jars)], "files": [files[k] for k in sorted(files)],
            "dpkg_status": status}


def _norm(name: str) -> str:
    return name.removeprefix("./").strip("/")


def _file_entry(path: str, f: Any, size: int) -> dict[str, Any]:
    sha1, sha256 = hashlib.sha1(usedforsecurity=False), hashlib.sha256()
    while chunk := f.read(1 << 20):
        sha1.update(chunk)
        sha256.update(chunk)
    return {"path": "/" + path, "size": size, "sha1": sha1.hexdigest(),
            "sha256": sha256.hexdigest()}


def pom_coordinates(jar: bytes) -> list[list[str]]:
    """[group, artifact, version] of every META-INF/maven/**/pom.properties, sorted.

    Maven writes one for the jar itself; shaded jars carry their bundled
    dependencies' too, so the caller picks the one that matches the file name."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(jar))
    except (zipfile.BadZipFile, ValueError):
        return []
    out = set()
    with zf:
        for name in zf.namelist():
            if not (name.startswith("META-INF/maven/") and name.endswith("/pom.properties")):
                continue
            try:
                props = _properties(zf.read(name).decode("utf-8", "replace"))
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
                continue
            g, a, v = props.get("groupId"), props.get("artifactId"), props.get("version")
            if g and a and v:
                out.add((g, a, v))
    return [list(c) for c in sorted(out)]


def _properties(text: str) -> dict[str, str]:
    """The `key=value` lines of a Java properties file (enough for pom.properties)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        for sep in ("=", ":"):
            if sep in line:
                k, _, v = line.partition(sep)
                out[k.strip()] = v.strip()
                break
    return out
