"""An image as a registry sees it: blobs to upload, then manifests, children first."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import StoreCorruptError
from ..oci import Descriptor, DocumentError
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
    try:
        for node in walk_graph([root], store.read_bytes):
            if node.data is None:
                tree.blobs.append(node.descriptor)
            else:
                desc = node.descriptor
                tree.manifests.append((Descriptor(desc.media_type, desc.digest,
                                                  len(node.data)), node.data))
    except DocumentError as e:  # hashes right, but is no manifest: the store is damaged
        raise StoreCorruptError(f"image {root.digest}: {e}; run `ociforge store fsck`"
                                ) from None
    return tree
