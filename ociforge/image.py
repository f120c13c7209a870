"""The one model of an image in the store: tag → manifest → config → layers, each
layer with its diff_id, its layer record and the one way to read its tar.

Every reader (inspect, catalog, SBOM, checks, outputs, fsck) gets a `StoredImage`
from `Store.image(name)` instead of walking JSON itself (a name tagged with an image
index is a `StoredIndex`, one `StoredImage` per platform; `Store.image(name,
platform)` picks one, the host's by default), so they agree on what an
image is, which record describes each layer (`records.pick_record`) and how a layer
blob is decompressed and verified (`open_uncompressed`).

Placement: this module does not import the store. It reads blobs through
`BlobSource` (a Protocol the store satisfies), so store.py can import it to offer
`Store.image()` without an import cycle: oci ← compression ← records ← image ← store.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import platform as _platform
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol, cast

import zstandard

from .compression import compression_of, decompressing_reader
from .errors import OciforgeError, StoreCorruptError
from .oci import Descriptor, document_kind
from .records import LayerRecord

READ_BLOCK = 1 << 20
REFERENCE_ANNOTATION = "io.ociforge.reference"
# What a damaged blob can make a decompressor or tar reader raise.
_READ_ERRORS = (tarfile.TarError, OSError, EOFError, zstandard.ZstdError)


class BlobSource(Protocol):
    """Reads blobs by digest (the store). `open_blob` must return a reader that
    raises StoreCorruptError at EOF when the bytes do not hash to the digest."""

    def open_blob(self, digest: str) -> io.RawIOBase: ...

    def read_bytes(self, digest: str) -> bytes: ...


RecordFor = Callable[[str, str], "LayerRecord | None"]  # (diff_id, blob digest) → record


class _DiffIdReader(io.RawIOBase):
    """Passes a decompressed stream through, hashing it for the diff_id."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self._inner = inner
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._inner.readinto(b)  # type: ignore[attr-defined]
        if n:
            self._hash.update(memoryview(b)[:n])
        return n or 0

    def digest(self) -> str:
        while self.read(READ_BLOCK):
            pass
        return "sha256:" + self._hash.hexdigest()


def _drain(raw: io.RawIOBase) -> None:
    """Read to EOF, where the store's verifying reader checks the blob digest."""
    while raw.read(READ_BLOCK):
        pass


@contextlib.contextmanager
def open_uncompressed(blobs: BlobSource, blob: Descriptor,
                      diff_id: str | None = None) -> Iterator[BinaryIO]:
    """A layer blob as its uncompressed tar stream: THE way to read a layer.

    Leaving the block normally reads what is left, then checks the blob's digest and
    (when given) the diff_id: StoreCorruptError if either is wrong. A read error
    inside the block (a broken gzip stream, a bad tar header) becomes
    StoreCorruptError when the blob turns out to be damaged, and stays as it is
    otherwise. Any other exception leaves without reading further."""
    raw = blobs.open_blob(blob.digest)
    try:
        tar = _DiffIdReader(decompressing_reader(raw, compression_of(blob.media_type)))
        try:
            yield cast(BinaryIO, tar)
            got = tar.digest()
            _drain(raw)
        except StoreCorruptError:
            raise
        except _READ_ERRORS:
            _drain(raw)  # raises StoreCorruptError if the blob is damaged
            raise
        if diff_id is not None and got != diff_id:
            raise StoreCorruptError(f"layer blob {blob.digest} holds a tar with diff_id "
                                    f"{got}, but the image says {diff_id}")
    finally:
        raw.close()


@dataclass(frozen=True)
class StoredLayer:
    """One layer of a stored image, bottom first."""

    descriptor: Descriptor          # the blob, as the manifest names it
    diff_id: str                    # from the config's rootfs
    record: LayerRecord | None      # None for a layer ociforge did not build (pulled)
    _blobs: BlobSource = field(repr=False, compare=False)

    @property
    def name(self) -> str | None:
        """The layer definition's name, from its record."""
        return self.record.name if self.record else None

    @property
    def compression(self) -> str:
        return compression_of(self.descriptor.media_type)

    def uncompressed(self) -> contextlib.AbstractContextManager[BinaryIO]:
        """The layer's tar, decompressed and verified (see `open_uncompressed`)."""
        return open_uncompressed(self._blobs, self.descriptor, self.diff_id)


@dataclass(frozen=True)
class StoredImage:
    """An image tagged in the store. The JSON documents are kept as bytes; `manifest`
    and `config` parse a fresh copy on each call, so nobody can change the image."""

    name: str
    reference: str                  # e.g. spark:4.1.1
    descriptor: Descriptor          # the manifest's, as tagged
    manifest_bytes: bytes = field(repr=False)
    config_bytes: bytes = field(repr=False)
    layers: tuple[StoredLayer, ...]

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(json.loads(self.manifest_bytes))

    @property
    def config(self) -> dict[str, Any]:
        return dict(json.loads(self.config_bytes))

    @property
    def config_descriptor(self) -> Descriptor:
        return Descriptor.from_json(self.manifest["config"])

    @property
    def os(self) -> str:
        return str(self.config.get("os", ""))

    @property
    def architecture(self) -> str:
        return str(self.config.get("architecture", ""))

    @property
    def platform(self) -> str:
        return f"{self.os}/{self.architecture}"

    @property
    def size(self) -> int:
        """Bytes of the layer blobs (what a pull transfers, config aside)."""
        return sum(layer.descriptor.size for layer in self.layers)

    def blobs(self) -> list[Descriptor]:
        """The config and layer blobs, in manifest order (the manifest itself aside)."""
        return [self.config_descriptor, *(layer.descriptor for layer in self.layers)]


def host_platform() -> str:
    """The platform this machine runs natively, as `os/architecture` (what a name
    tagged with an index stands for when no platform is asked for)."""
    machine = _platform.machine().lower()
    return f"linux/{_ARCHES.get(machine, machine)}"


_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def entry_platform(entry: Mapping[str, Any]) -> str:
    """`os/architecture[/variant]` of an index entry ("" if it names none)."""
    p = entry.get("platform") or {}
    if not isinstance(p, Mapping):
        return ""
    parts = [str(p.get("os") or ""), str(p.get("architecture") or "")]
    if not all(parts):
        return ""
    return "/".join([*parts, *([str(p["variant"])] if p.get("variant") else [])])


def tag_platforms(blobs: BlobSource, entry: Mapping[str, Any]) -> list[str]:
    """The platforms a tag (an index.json entry) holds, read from its index's entries or
    its manifest's config alone (no layer record): a listing of many images stays
    cheap. [] where they cannot be read (`store fsck` says why)."""
    try:
        doc = json.loads(blobs.read_bytes(str(entry["digest"])))
        if isinstance(doc.get("manifests"), list):
            return [entry_platform(m) or "unknown" for m in doc["manifests"]]
        config = json.loads(blobs.read_bytes(str(doc["config"]["digest"])))
        return [f"{config['os']}/{config['architecture']}"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OciforgeError):
        return []


def platform_matches(have: str, want: str) -> bool:
    """`linux/arm64` asks for any variant of it; `linux/arm64/v8` for that one."""
    return have == want or (want.count("/") == 1 and have.startswith(want + "/"))


class PlatformNotInImageError(OciforgeError):
    """A platform asked of an image that has no manifest for it (exit 1)."""

    def __init__(self, name: str, platform: str, have: list[str]) -> None:
        super().__init__(f"image {name!r} has no {platform} image (it has: "
                         f"{', '.join(have) or 'none'}); choose one with --platform")
        self.name = name
        self.platform = platform
        self.have = have


@dataclass(frozen=True)
class StoredIndex:
    """A name tagged with an OCI image index: one `StoredImage` per platform, in the
    index's order. Outputs that carry every platform (OCI layout, push) take it where
    they take a `StoredImage`: `descriptor`, `reference` and `blobs()` mean the same."""

    name: str
    reference: str
    descriptor: Descriptor          # the index's, as tagged
    index_bytes: bytes = field(repr=False)
    images: tuple[StoredImage, ...]
    # Each image's platform: its config's, else its index entry's, else "unknown".
    image_platforms: tuple[str, ...]

    @property
    def index(self) -> dict[str, Any]:
        return dict(json.loads(self.index_bytes))

    @property
    def platforms(self) -> list[str]:
        return list(self.image_platforms)

    def image(self, platform: str) -> StoredImage:
        """The image of `platform` (PlatformNotInImageError naming the ones it has)."""
        for img, have in zip(self.images, self.image_platforms, strict=True):
            if platform_matches(have, platform):
                return img
        raise PlatformNotInImageError(self.name, platform, self.platforms)

    def blobs(self) -> list[Descriptor]:
        """Every platform's manifest, config and layers, each blob once (the index
        itself aside), manifests first."""
        out: dict[str, Descriptor] = {img.descriptor.digest: img.descriptor
                                      for img in self.images}
        for img in self.images:
            for d in img.blobs():
                out.setdefault(d.digest, d)
        return list(out.values())

    @property
    def size(self) -> int:
        """Bytes of the distinct layer blobs of all platforms (a layer shared by two
        platforms counted once: what a registry stores)."""
        layers = {layer.descriptor.digest: layer.descriptor.size
                  for img in self.images for layer in img.layers}
        return sum(layers.values())


def default_reference(name: str) -> str:
    """The reference of a tag that carries none: `name`, with `:latest` if untagged."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _reference(name: str, entry: Mapping[str, Any]) -> str:
    return str(entry.get("annotations", {}).get(REFERENCE_ANNOTATION)
               or default_reference(name))


def load_image(blobs: BlobSource, name: str, entry: Mapping[str, Any],
               record_for: RecordFor, platform: str | None = None) -> StoredImage:
    """The image an index.json entry (`entry`, tagged `name`) points at. A name tagged
    with an index stands for its image of `platform`, by default the host's; a name
    tagged with one manifest is that image, and asking it for another platform is an
    error naming the one it has."""
    tagged = Descriptor.from_json(entry)
    data = blobs.read_bytes(tagged.digest)
    if document_kind(tagged.media_type, json.loads(data)) == "index":
        return load_index(blobs, name, entry, record_for, data).image(
            platform or host_platform())
    img = _load_manifest(blobs, name, _reference(name, entry), tagged, data, record_for)
    if platform is not None and not platform_matches(img.platform, platform):
        raise PlatformNotInImageError(name, platform, [img.platform])
    return img


def load_index(blobs: BlobSource, name: str, entry: Mapping[str, Any],
               record_for: RecordFor, data: bytes | None = None) -> StoredIndex:
    """The index an index.json entry points at, each platform's image loaded (its
    platform from its config, else from its index entry, else "unknown"). What
    ociforge cannot read as "one image per platform" (a nested index, two entries of
    one platform) is an error naming it, never a guess."""
    tagged = Descriptor.from_json(entry)
    data = blobs.read_bytes(tagged.digest) if data is None else data
    doc = json.loads(data)
    if document_kind(tagged.media_type, doc) != "index":
        raise OciforgeError(f"image {name!r} is one manifest, not an index")
    reference = _reference(name, entry)
    images: list[StoredImage] = []
    have: list[str] = []
    for child in doc.get("manifests", []):
        desc = Descriptor.from_json(child)
        child_bytes = blobs.read_bytes(desc.digest)
        if document_kind(desc.media_type, json.loads(child_bytes)) == "index":
            raise OciforgeError(f"image {name!r} is an index that lists another index "
                                f"({desc.digest}); ociforge reads indexes of image manifests")
        img = _load_manifest(blobs, name, reference, desc, child_bytes, record_for)
        said = entry_platform(child)
        if not (img.os and img.architecture):
            have.append(said or "unknown")
        elif said and not platform_matches(said, img.platform):
            raise StoreCorruptError(f"image {name!r}: its index lists {desc.digest} as "
                                    f"{said}, but its config says {img.platform}")
        else:
            have.append(img.platform)
        images.append(img)
    if len(set(have)) != len(have):
        raise OciforgeError(f"image {name!r} is an index with several manifests of one "
                            f"platform ({', '.join(have)}); ociforge cannot choose")
    index_desc = Descriptor(tagged.media_type or str(doc.get("mediaType", "")),
                            tagged.digest, tagged.size)
    return StoredIndex(name, reference, index_desc, data, tuple(images), tuple(have))


def _load_manifest(blobs: BlobSource, name: str, reference: str, tagged: Descriptor,
                   manifest_bytes: bytes, record_for: RecordFor) -> StoredImage:
    manifest = json.loads(manifest_bytes)
    descriptor = Descriptor(tagged.media_type or str(manifest.get("mediaType", "")),
                            tagged.digest, tagged.size)
    config_bytes = blobs.read_bytes(manifest["config"]["digest"])
    diff_ids = json.loads(config_bytes).get("rootfs", {}).get("diff_ids", [])
    descs = [Descriptor.from_json(d) for d in manifest.get("layers", [])]
    if len(descs) != len(diff_ids):
        raise StoreCorruptError(f"image {name!r}: its manifest lists {len(descs)} layers "
                                f"but its config {len(diff_ids)} diff_ids")
    layers = tuple(StoredLayer(d, str(diff_id), record_for(str(diff_id), d.digest), blobs)
                   for d, diff_id in zip(descs, diff_ids, strict=True))
    return StoredImage(name, reference, descriptor, manifest_bytes, config_bytes, layers)
