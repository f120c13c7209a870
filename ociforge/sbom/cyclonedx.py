"""CycloneDX 1.5 JSON from the same `Inventory` as the SPDX document.

Jars unpacked from a distribution are nested under it (CycloneDX expresses
containment by nesting); the serial number is a UUID derived from the image
manifest digest, so the same image gives the same bytes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from .. import __version__
from .model import Component, FileItem, Inventory
from .purl import oci as oci_purl

MEDIA_TYPE = "application/vnd.cyclonedx+json"
_TYPES = {"deb": "library", "pypi": "library", "maven": "library", "jar": "library",
          "dist": "application", "archive": "library", "builder": "application",
          "files": "application"}


def document(inv: Inventory) -> dict[str, Any]:
    components = inv.sorted_components()
    children: dict[str, list[Component]] = {}
    known = {c.key for c in components}
    for c in components:
        if c.parent in known:
            children.setdefault(str(c.parent), []).append(c)
    files: dict[str, list[FileItem]] = {}
    loose = []
    for f in inv.sorted_files():
        if f.parent in known:
            files.setdefault(str(f.parent), []).append(f)
        else:
            loose.append(f)
    top = [_component(c, children, files) for c in components if c.parent not in known]
    top += [_file(f) for f in loose]
    repo, _, tag = inv.reference.rpartition(":") if ":" in inv.reference.rsplit("/", 1)[-1] \
        else (inv.reference, "", "")
    image = {
        "type": "container", "bom-ref": "image", "name": inv.reference,
        "version": inv.manifest_digest,
        "purl": oci_purl(inv.manifest_digest, inv.architecture, tag or None,
                         repo.rsplit("/", 1)[-1] or "image"),
        "hashes": [{"alg": "SHA-256", "content": inv.manifest_digest.split(":", 1)[1]}],
        "properties": _props({"ociforge:name": inv.name,
                              "ociforge:platform": f"{inv.os}/{inv.architecture}"}),
    }
    doc: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": uuid.UUID(hex=inv.manifest_digest.split(":", 1)[1][:32],
                                  version=5).urn,
        "version": 1,
        "metadata": {
            "timestamp": inv.created,
            "tools": {"components": [{"type": "application", "name": "ociforge",
                                      "version": __version__}]},
            "component": image,
        },
        "components": top,
        "dependencies": [{"ref": "image",
                          "dependsOn": sorted(c["bom-ref"] for c in top)}],
    }
    if inv.unknown_layers:
        doc["metadata"]["properties"] = _props(
            {"ociforge:undescribed-layers": ",".join(inv.unknown_layers)})
    return doc


def render(inv: Inventory) -> bytes:
    return (json.dumps(document(inv), indent=1, sort_keys=True, ensure_ascii=False)
            + "\n").encode()


def _props(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(values.items()) if v]


def _component(c: Component, children: dict[str, list[Component]],
               files: dict[str, list[FileItem]]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": _TYPES.get(c.kind, "library"), "bom-ref": c.key,
                           "name": c.name}
    if c.version:
        out["version"] = c.version
    if c.purl:
        out["purl"] = c.purl
    if c.sha256:
        out["hashes"] = [{"alg": "SHA-256", "content": c.sha256}]
    if c.download:
        out["externalReferences"] = [{"type": "distribution", "url": c.download}]
    if c.comment:
        out["description"] = c.comment
    props = {"ociforge:layer": c.layer, **{f"ociforge:{k}": v for k, v in c.properties.items()}}
    if c.filename:
        props["ociforge:filename"] = c.filename
    out["properties"] = _props(props)
    nested = [_component(k, children, files) for k in children.get(c.key, [])]
    nested += [_file(f) for f in files.get(c.key, [])]
    if nested:
        out["components"] = nested
    return out


def _file(f: FileItem) -> dict[str, Any]:
    return {"type": "file", "bom-ref": f"file-{f.key}", "name": f.path,
            "hashes": [{"alg": "SHA-1", "content": f.sha1},
                       {"alg": "SHA-256", "content": f.sha256}],
            "properties": _props({"ociforge:layer": f.layer,
                                  "ociforge:origin": f.origin or ""})}
