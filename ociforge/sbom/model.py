"""The SBOM's content, independent of its format: one image, its packages, its files.

Both writers (SPDX, CycloneDX) render the same `Inventory`, so the two formats
never disagree about what an image holds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field


@dataclass
class Component:
    """A package found in a layer's provenance (or a jar in a layer's tar)."""

    kind: str  # deb | pypi | maven | jar | dist | archive | builder | files
    name: str
    version: str | None
    purl: str | None
    layer: str
    sha256: str | None = None
    filename: str | None = None  # file name, or path in the image for jars
    download: str | None = None  # where the bytes came from, when known
    source_info: str | None = None
    comment: str | None = None
    purpose: str = "LIBRARY"  # SPDX primaryPackagePurpose
    properties: dict[str, str] = field(default_factory=dict)
    parent: str | None = None  # key of the component this one was unpacked from

    @property
    def key(self) -> str:
        """Stable identity: the same component in the same place gets the same id."""
        ident = "\0".join([self.kind, self.name, self.version or "", self.purl or "",
                           self.sha256 or "", self.filename or "", self.layer])
        return f"{self.kind}-{_safe(self.name)}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


@dataclass
class FileItem:
    """A regular file from this repository (a `files` layer)."""

    path: str  # absolute path in the image
    sha1: str
    sha256: str
    layer: str
    origin: str | None = None  # project-relative source path
    parent: str | None = None  # key of the `files` component of its layer

    @property
    def key(self) -> str:
        ident = f"{self.path}\0{self.sha256}\0{self.layer}"
        base = _safe(self.path.rsplit("/", 1)[-1]) or "file"
        return f"{base}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


@dataclass
class Inventory:
    name: str  # store name
    reference: str  # e.g. spark:4.1.1
    manifest_digest: str
    manifest_media_type: str
    os: str
    architecture: str
    created: str  # RFC 3339, from the image config
    components: list[Component] = field(default_factory=list)
    files: list[FileItem] = field(default_factory=list)
    unknown_layers: list[str] = field(default_factory=list)  # diff_ids without a record

    def sorted_components(self) -> list[Component]:
        """By identifier, each once (a record listing a package twice must not give
        a document with a duplicate SPDX identifier)."""
        return sorted({c.key: c for c in self.components}.values(), key=lambda c: c.key)

    def sorted_files(self) -> list[FileItem]:
        return sorted({f.key: f for f in self.files}.values(), key=lambda f: (f.path, f.key))


def _safe(text: str) -> str:
    """Only what an SPDX identifier allows: letters, digits, `.` and `-`."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-")[:64]
