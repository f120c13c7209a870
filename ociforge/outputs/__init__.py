"""Outputs: one module per medium (layout directory, archive), same input shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import OciforgeError
from ..store import REF_NAME, Descriptor, Store


@dataclass
class ImageRef:
    """An image tagged in the store, with everything an output needs to write it."""

    name: str
    reference: str  # e.g. spark-4.1.1:latest
    manifest: Descriptor
    manifest_json: dict[str, Any]

    def blobs(self) -> list[Descriptor]:
        m = self.manifest_json
        descs = [m["config"], *m["layers"]]
        return [Descriptor(d["mediaType"], d["digest"], d["size"]) for d in descs]


def load_images(store: Store, names: list[str]) -> list[ImageRef]:
    tags = store.tags()
    out = []
    for name in names:
        entry = tags.get(name)
        if entry is None:
            raise OciforgeError(
                f"image {name!r} is not in the store; run `ociforge assemble {name}`")
        desc = Descriptor(entry["mediaType"], entry["digest"], entry["size"])
        ref = entry.get("annotations", {}).get("io.ociforge.reference", f"{name}:latest")
        out.append(ImageRef(name, ref, desc, store.read_json(desc.digest)))
    return out


def full_reference(ref: str) -> str:
    """Docker-style normalisation: `spark:4.1` → `docker.io/library/spark:4.1`."""
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    if "/" not in ref:
        return f"docker.io/library/{ref}"
    return f"docker.io/{ref}"


def index_entry(img: ImageRef) -> dict[str, Any]:
    """index.json entry as Docker 25+ writes it (containerd and skopeo read both keys)."""
    tag = img.reference.rsplit(":", 1)[1] if ":" in img.reference.split("/")[-1] else "latest"
    return {
        **img.manifest.to_json(),
        "annotations": {
            "io.containerd.image.name": full_reference(img.reference),
            REF_NAME: tag,
        },
    }
