"""An image as a registry sees it: blobs to upload, then manifests, children first."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..oci import Descriptor
from ..oci import walk as walk_graph
from ..store import Store


@dataclass
class ImageTree:
    root: Descriptor
    manifests: list[tuple[Descriptor, bytes]] = field(default_factory=list)  # root last
    blobs: list[Descriptor] = field(default_factory=list)  # config and layers, no repeats


def walk(store: Store, root: Descriptor) -> ImageTree:
    """Read the manifest (or index) and everything it names from the store, verified
    (StoreCorruptError if a document is missing or damaged)."""
    tree = ImageTree(root)
    for node in walk_graph([root], store.read_bytes):
        if node.data is None:
            tree.blobs.append(node.descriptor)
        else:
            desc = node.descriptor
            tree.manifests.append((Descriptor(desc.media_type, desc.digest, len(node.data)),
                                   node.data))
    return tree
