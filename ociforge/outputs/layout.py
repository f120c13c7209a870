"""Export images from the store as a standalone OCI image layout directory."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..digests import canonical_json, digest_hex
from ..errors import StoreCorruptError
from ..image import StoredImage
from ..oci import MT_INDEX
from ..store import OCI_LAYOUT, Store, atomic_write, hash_file_matches
from . import index_entry


def export_layout(store: Store, images: list[StoredImage], dest: Path, *,
                  verify: bool = True,
                  progress: Callable[[int], None] | None = None) -> None:
    """Write (or add to) an OCI layout at `dest`. Blobs are hard-linked when the
    store is on the same filesystem, copied otherwise; each is verified first."""
    blobs_dir = dest / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for img in images:
        for desc in [img.descriptor, *img.blobs()]:
            if desc.digest in seen:
                continue
            seen.add(desc.digest)
            src = store.blob_path(desc.digest)
            target = blobs_dir / digest_hex(desc.digest)
            if verify:
                ok, got = hash_file_matches(src, desc.digest)
                if not ok:
                    raise StoreCorruptError(f"blob {desc.digest} is corrupt on disk (content "
                                            f"hashes to {got}); run `ociforge store fsck`")
            if not target.exists():
                tmp = blobs_dir / f".{target.name}.{os.getpid()}.part"
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copyfile(src, tmp)
                os.replace(tmp, target)
            if progress:
                progress(desc.size)
    index_path = dest / "index.json"
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}
    if index_path.exists():
        index = json.loads(index_path.read_bytes())
    names = {index_entry(i)["annotations"]["io.containerd.image.name"] for i in images}
    kept = [m for m in index.get("manifests", [])
            if m.get("annotations", {}).get("io.containerd.image.name") not in names]
    index["manifests"] = kept + [index_entry(i) for i in images]
    atomic_write(dest / "oci-layout", canonical_json(OCI_LAYOUT))
    atomic_write(index_path, canonical_json(index))
