"""Outputs: one module per medium (layout directory, archive), same input: the
`StoredImage`s from `Store.images(names, platform)`. The archive holds one platform
per image (`minikube image load` and `kind load image-archive` read one); the OCI
layout also takes `StoredIndex`es (`Store.tagged(names)`) and carries every
platform: index.json → image index → manifests."""

from __future__ import annotations

from typing import Any

from ..image import StoredImage, StoredIndex
from ..store import REF_NAME


def full_reference(ref: str) -> str:
    """Docker-style normalisation: `spark:4.1` → `docker.io/library/spark:4.1`."""
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    if "/" not in ref:
        return f"docker.io/library/{ref}"
    return f"docker.io/{ref}"


def index_entry(img: StoredImage | StoredIndex) -> dict[str, Any]:
    """index.json entry as Docker 25+ writes it (containerd and skopeo read both keys)."""
    tag = img.reference.rsplit(":", 1)[1] if ":" in img.reference.split("/")[-1] else "latest"
    return {
        **img.descriptor.to_json(),
        "annotations": {
            "io.containerd.image.name": full_reference(img.reference),
            REF_NAME: tag,
        },
    }
