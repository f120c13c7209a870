"""The one model of an image in the store: tag → manifest → config → layers, each
layer with its diff_id, its layer record and the one way to read its tar.

Every reader (inspect, catalog, SBOM, checks, outputs, fsck) gets a `StoredImage`
from `Store.image(name)` instead of walking JSON itself, so they agree on what an
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


def default_reference(name: str) -> str:
    """The reference of a tag that carries none: `name`, with `:latest` if untagged."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def load_image(blobs: BlobSource, name: str, entry: Mapping[str, Any],
               record_for: RecordFor) -> StoredImage:
    """The image an index.json entry (`entry`, tagged `name`) points at."""
    tagged = Descriptor.from_json(entry)
    manifest_bytes = blobs.read_bytes(tagged.digest)
    manifest = json.loads(manifest_bytes)
    if document_kind(tagged.media_type, manifest) == "index":
        raise OciforgeError(f"image {name!r} is an index of several platforms; this "
                            "command reads one image manifest")
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
    reference = str(entry.get("annotations", {}).get(REFERENCE_ANNOTATION)
                    or default_reference(name))
    return StoredImage(name, reference, descriptor, manifest_bytes, config_bytes, layers)
