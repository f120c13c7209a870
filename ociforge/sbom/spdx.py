"""SPDX 2.3 JSON from an `Inventory`.

Reproducible by construction: the namespace is derived from the image manifest
digest, `created` is the image's own creation time, identifiers are hashes of what
they name, and every list is sorted.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .. import __version__
from .model import Component, FileItem, Inventory
from .purl import oci as oci_purl

MEDIA_TYPE = "application/spdx+json"
NAMESPACE_BASE = "https://ociforge.invalid/spdx"  # .invalid: an identifier, not a location
IMAGE_ID = "SPDXRef-Image"
NOASSERTION = "NOASSERTION"
# What SPDX 2.3 accepts as a download location: a host name with a top-level domain
# (an address like 127.0.0.1:8081 is not one; such URLs go into the comment instead).
_LOCATION = re.compile(r"^(https?|ftp)://[a-z0-9]+([.-][a-z0-9]+)*\.[a-z]{2,5}(:[0-9]{1,5})?"
                       r"(/.*)?$", re.IGNORECASE)


def document(inv: Inventory) -> dict[str, Any]:
    components = inv.sorted_components()
    files = inv.sorted_files()
    ids = {c.key: f"SPDXRef-Package-{c.key}" for c in components}
    rels = [_rel(IMAGE_ID, "CONTAINS", ids[c.key]) for c in components]
    rels += [_rel(ids[c.parent], "CONTAINS", ids[c.key]) for c in components
             if c.parent in ids]
    rels += [_rel(ids.get(str(f.parent), IMAGE_ID), "CONTAINS", f"SPDXRef-File-{f.key}")
             for f in files]
    rels.sort(key=lambda r: (r["spdxElementId"], r["relatedSpdxElement"]))
    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": inv.name,
        "documentNamespace": f"{NAMESPACE_BASE}/{inv.name}/{inv.manifest_digest.replace(':', '-')}",
        "creationInfo": {
            "created": inv.created,
            "creators": [f"Tool: ociforge-{__version__}"],
            "comment": "From the layer provenance ociforge recorded when it built each layer "
                       "(and, for jars and repository files, from the layer tars it wrote); "
                       "not from scanning a container.",
        },
        "packages": [_image(inv)] + [_package(c, ids[c.key], files) for c in components],
        "relationships": [_rel("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID), *rels],
    }
    if files:
        doc["files"] = [_file(f) for f in files]
    if inv.unknown_layers:
        doc["comment"] = ("Layers without an ociforge layer record (not described): "
                          + ", ".join(inv.unknown_layers))
    return doc


def render(inv: Inventory) -> bytes:
    return (json.dumps(document(inv), indent=1, sort_keys=True, ensure_ascii=False)
            + "\n").encode()


def _rel(a: str, kind: str, b: str) -> dict[str, str]:
    return {"spdxElementId": a, "relationshipType": kind, "relatedSpdxElement": b}


def _purl_ref(locator: str) -> dict[str, str]:
    return {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
            "referenceLocator": locator}


def _image(inv: Inventory) -> dict[str, Any]:
    repo, _, tag = inv.reference.rpartition(":") if ":" in inv.reference.rsplit("/", 1)[-1] \
        else (inv.reference, "", "")
    return {
        "SPDXID": IMAGE_ID,
        "name": inv.reference,
        "versionInfo": inv.manifest_digest,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256",
                       "checksumValue": inv.manifest_digest.split(":", 1)[1]}],
        "externalRefs": [_purl_ref(oci_purl(inv.manifest_digest, inv.architecture,
                                            tag or None, repo.rsplit("/", 1)[-1] or "image"))],
        "comment": f"OCI image {inv.name}: manifest {inv.manifest_digest} "
                   f"({inv.manifest_media_type}), platform {inv.os}/{inv.architecture}",
    }


def _package(c: Component, spdx_id: str, files: list[FileItem]) -> dict[str, Any]:
    location = c.download if c.download and _LOCATION.match(c.download) else None
    p: dict[str, Any] = {
        "SPDXID": spdx_id,
        "name": c.name,
        "downloadLocation": location or NOASSERTION,
        "filesAnalyzed": False,
        "primaryPackagePurpose": c.purpose,
    }
    mine = [f for f in files if f.parent == c.key]
    if mine:
        p["filesAnalyzed"] = True
        p["packageVerificationCode"] = {"packageVerificationCodeValue": verification_code(mine)}
    if c.version:
        p["versionInfo"] = c.version
    if c.purl:
        p["externalRefs"] = [_purl_ref(c.purl)]
    if c.sha256:
        p["checksums"] = [{"algorithm": "SHA256", "checksumValue": c.sha256}]
    if c.filename:
        p["packageFileName"] = c.filename
    if c.source_info:
        p["sourceInfo"] = c.source_info
    p["comment"] = f"layer {c.layer}" + (f"; {c.comment}" if c.comment else "") \
        + (f"; downloaded from {c.download}" if c.download and not location else "")
    return p


def verification_code(files: list[FileItem]) -> str:
    """SPDX 2.3 §7.9: SHA1 over the sorted, concatenated SHA1s of the package's files."""
    joined = "".join(sorted(f.sha1 for f in files))
    return hashlib.sha1(joined.encode(), usedforsecurity=False).hexdigest()


def _file(f: FileItem) -> dict[str, Any]:
    return {
        "SPDXID": f"SPDXRef-File-{f.key}",
        "fileName": "." + f.path,
        "checksums": [{"algorithm": "SHA1", "checksumValue": f.sha1},
                      {"algorithm": "SHA256", "checksumValue": f.sha256}],
        "comment": f"layer {f.layer}"
                   + (f"; from {f.origin} in the ociforge project" if f.origin else ""),
    }
