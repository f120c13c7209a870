"""An image as a registry sees it: blobs to upload, then manifests, children first."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..errors import StoreCorruptError
from ..store import MT_DOCKER_LIST, MT_INDEX, Descriptor, Store

INDEX_TYPES = (MT_INDEX, MT_DOCKER_LIST)


@dataclass
class ImageTree:
    root: Descriptor
    manifests: list[tuple[Descriptor, bytes]] = field(default_factory=list)  # root last
    blobs: list[Descriptor] = field(default_factory=list)  # config and layers, no repeats


def walk(store: Store, root: Descriptor) -> ImageTree:
    """Read the manifest (or index) and everything it names from the store, verified."""
    tree = ImageTree(root)
    seen: set[str] = set()

    def visit(desc: Descriptor) -> None:
        data = store.read_bytes(desc.digest)
        doc = json.loads(data)
        media_type = desc.media_type or str(doc.get("mediaType", ""))
        if media_type in INDEX_TYPES or "manifests" in doc:
            for child in doc.get("manifests", []):
                if not store.has_blob(child["digest"]):
                    raise StoreCorruptError(f"index {desc.digest} names manifest "
                                            f"{child['digest']}, which is not in the store")
                visit(Descriptor(child.get("mediaType", ""), child["digest"], child["size"]))
        else:
            for blob in [doc["config"], *doc.get("layers", [])]:
                if blob["digest"] not in seen:
                    seen.add(blob["digest"])
                    tree.blobs.append(Descriptor(blob.get("mediaType", ""), blob["digest"],
                                                 int(blob["size"])))
        tree.manifests.append((Descriptor(media_type, desc.digest, len(data)), data))

    visit(root)
    return tree
