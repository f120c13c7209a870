"""The single image archive: an OCI layout plus Docker's manifest.json, one tar.

What Docker 25+ writes and what `minikube image load`, `kind load image-archive`,
`ctr images import`, `docker load`, `podman load` and skopeo's `oci-archive:` and
`docker-archive:` all read. Written as a stream (blobs verified as they are
copied), to a temporary name renamed into place: an interrupted export never
leaves a truncated archive under the final name. The outer tar is uncompressed
and deterministic.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..digests import canonical_json, digest_hex
from ..image import StoredImage
from ..oci import MT_INDEX
from ..store import OCI_LAYOUT, Store, is_special
from ..tartree import COPY_BUFSIZE
from . import index_entry


def docker_manifest(images: list[StoredImage]) -> list[dict[str, Any]]:
    out = []
    for img in images:
        out.append({
            "Config": f"blobs/sha256/{digest_hex(img.config_descriptor.digest)}",
            "RepoTags": [img.reference],
            "Layers": [f"blobs/sha256/{digest_hex(layer.descriptor.digest)}"
                       for layer in img.layers],
        })
    return out


def repositories(images: list[StoredImage]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for img in images:
        repo, _, tag = img.reference.rpartition(":")
        top = img.layers[-1].descriptor.digest
        out.setdefault(repo, {})[tag] = digest_hex(top)
    return out


def _info(name: str, size: int = 0, dir_: bool = False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mode = 0o755 if dir_ else 0o644
    ti.type = tarfile.DIRTYPE if dir_ else tarfile.REGTYPE
    return ti


class _Counted:
    """A write-only file that counts what passes through (a pipe has no tell())."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return self.out.write(data)


def write_archive(store: Store, images: list[StoredImage], dest: Path, *,
                  progress: Callable[[int], None] | None = None, layers: bool = True) -> int:
    """Write the archive to `dest`; returns its size in bytes.

    With `layers=False` only configs, manifests and index.json are written (no Docker
    manifest.json): enough for `ctr images import` when the layers are already in
    containerd's content store, as for a variant that differs only in its config."""
    files: dict[str, bytes] = {
        "oci-layout": canonical_json(OCI_LAYOUT),
        "index.json": canonical_json({"schemaVersion": 2, "mediaType": MT_INDEX,
                                      "manifests": [index_entry(i) for i in images]}),
    }
    if layers:
        files["manifest.json"] = json.dumps(docker_manifest(images),
                                            separators=(",", ":")).encode()
        files["repositories"] = json.dumps(repositories(images), separators=(",", ":")).encode()
    blobs: dict[str, int] = {}
    for img in images:
        for desc in [img.descriptor, *img.blobs()][: None if layers else 2]:
            blobs[desc.digest] = desc.size

    def write(out: IO[bytes]) -> int:
        counted = _Counted(out)
        with tarfile.open(fileobj=counted, mode="w|",  # type: ignore[call-overload]
                          format=tarfile.PAX_FORMAT, bufsize=COPY_BUFSIZE) as tar:
            tar.copybufsize = COPY_BUFSIZE  # type: ignore[attr-defined]
            for name, data in files.items():
                tar.addfile(_info(name, len(data)), io.BytesIO(data))
            tar.addfile(_info("blobs/", dir_=True))
            tar.addfile(_info("blobs/sha256/", dir_=True))
            for digest, size in blobs.items():
                store.check_blob_size(digest, size)
                with store.open_blob(digest) as reader:
                    tar.addfile(_info(f"blobs/sha256/{digest_hex(digest)}", size),
                                reader)  # type: ignore[arg-type]
                    reader.read()  # at EOF the reader compares the digest
                if progress:
                    progress(size)
        return counted.n

    if is_special(dest):  # /dev/null, a pipe: in place (a rename would replace the node)
        with open(dest, "wb") as out:
            return write(out)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as out:
            size = write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
        return size
    finally:
        tmp.unlink(missing_ok=True)
