"""OCI vocabulary: media types, descriptors and the one walk over a manifest graph.

Pure data and functions, no store: the walk reads documents through a callable, so
the store's reachability (gc), fsck, the registry push and the image model share
one rule for what a manifest is. It imports nothing from the package, so anything
may import it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (MT_INDEX, MT_DOCKER_LIST)
MANIFEST_TYPES = (MT_MANIFEST, MT_DOCKER_MANIFEST)

Kind = Literal["index", "manifest", "config", "layer"]


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Descriptor:
        """From a descriptor in a manifest, index or layer record (mediaType may be
        missing in what other tools wrote)."""
        return cls(str(data.get("mediaType") or ""), str(data["digest"]), int(data["size"]))


def document_kind(media_type: str, doc: Mapping[str, Any]) -> Literal["index", "manifest"]:
    """What a document named by a tag or an index entry is. The descriptor's media type
    decides; where it says nothing useful, the document's own mediaType, then its
    shape (an index lists `manifests`)."""
    for mt in (media_type, str(doc.get("mediaType") or "")):
        if mt in INDEX_TYPES:
            return "index"
        if mt in MANIFEST_TYPES:
            return "manifest"
    return "index" if "manifests" in doc else "manifest"


class DocumentError(ValueError):
    """A manifest or index (by a strict `walk`) that is not a JSON object or names a
    malformed descriptor. `digest` says which document."""

    def __init__(self, digest: str, reason: str) -> None:
        super().__init__(f"{digest} {reason}")
        self.digest = digest


@dataclass(frozen=True)
class Node:
    """One descriptor reached by `walk`. For an index or manifest, `data` holds the
    document's bytes (None when it could not be read and `strict` was off)."""

    descriptor: Descriptor  # media type filled in from the document where it had none
    kind: Kind
    data: bytes | None = None


def walk(roots: Iterable[Descriptor], read: Callable[[str], bytes], *,
         strict: bool = True) -> Iterator[Node]:
    """Every descriptor reachable from `roots` (tags or index entries), each once,
    children before their parent: a manifest's config and layers, then the manifest;
    an index's manifests, then the index.

    Roots and an index's entries are documents (index or manifest, see
    `document_kind`); a manifest's config and layers are leaves. With `strict` off a
    document that cannot be read or parsed is yielded without data and not descended
    into; with it on, the reader's error propagates and a document that is not a JSON
    object or names a malformed descriptor raises `DocumentError` (what gc and a push
    need: neither may act on a graph it could not read whole)."""
    seen: set[str] = set()

    def visit(desc: Descriptor) -> Iterator[Node]:
        if desc.digest in seen:
            return
        seen.add(desc.digest)
        try:
            data = read(desc.digest)
            doc = _document(desc.digest, data)
            if document_kind(desc.media_type, doc) == "index":
                kind: Kind = "index"
                children = _descriptors(desc.digest, doc.get("manifests", []), strict)
            else:
                kind = "manifest"
                leaves = [("config", d) for d in
                          _descriptors(desc.digest, [doc.get("config")], strict)]
                leaves += [("layer", d) for d in
                           _descriptors(desc.digest, doc.get("layers", []), strict)]
        except Exception:
            if strict:
                raise
            yield Node(desc, "manifest")
            return
        resolved = Descriptor(desc.media_type or str(doc.get("mediaType") or ""),
                              desc.digest, desc.size)
        if kind == "index":
            for child in children:
                yield from visit(child)
        else:
            for leaf_kind, blob in leaves:
                if blob.digest not in seen:
                    seen.add(blob.digest)
                    yield Node(blob, leaf_kind)  # type: ignore[arg-type]
        yield Node(resolved, kind, data)

    for root in roots:
        yield from visit(root)


def _document(digest: str, data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError:
        raise DocumentError(digest, "is not valid JSON") from None
    if not isinstance(doc, dict):
        raise DocumentError(digest, "is not a JSON object")
    return doc


def _descriptors(parent: str, items: Any, strict: bool) -> list[Descriptor]:
    """The well-formed descriptors among `items` of the document `parent` (a malformed
    one, or `items` not a list, raises DocumentError if `strict`)."""
    if not isinstance(items, list):
        if strict:
            raise DocumentError(parent, "lists its descriptors in something not a list")
        return []
    out = []
    for item in items:
        if item is None:
            continue
        try:
            out.append(Descriptor.from_json(item))
        except (KeyError, TypeError, ValueError, AttributeError):
            if strict:
                raise DocumentError(parent, f"names a malformed descriptor: {item!r:.80}"
                                    ) from None
    return out
