"""An image named on the command line, wherever it is: a tag in the store, an image
archive (`.tar`, as `assemble --archive` writes it), or an OCI layout directory
(`PATH#NAME` picks one of several images). Blobs are read where they are, verified
against their digests; layer records come from the store (by diff_id), so an image
ociforge built still has its provenance after a round trip through an archive."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import OciforgeError, RecipeError
from .image import StoredImage, default_reference, load_image
from .store import REF_NAME, Store, VerifyingReader

CONTAINERD_NAME = "io.containerd.image.name"


class LayoutBlobs:
    """Blobs of an OCI layout directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        algo, _, hexpart = digest.partition(":")
        path = self.root / "blobs" / algo / hexpart
        if algo != "sha256" or not hexpart.isalnum() or not path.is_file():
            raise OciforgeError(f"{self.root}: no blob {digest}")
        return path

    def open_blob(self, digest: str) -> VerifyingReader:
        return VerifyingReader(self._path(digest), digest)

    def read_bytes(self, digest: str) -> bytes:
        with self.open_blob(digest) as r:
            return r.read()

    def read_file(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


class ArchiveBlobs:
    """Blobs of an image archive (an OCI layout in a tar), read in place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.tar = tarfile.open(path, "r:")  # noqa: SIM115 (kept open for the reads)
        except (tarfile.TarError, OSError) as e:
            raise OciforgeError(f"{path}: not an image archive ({e})") from None
        self.members = {m.name.lstrip("./"): m for m in self.tar.getmembers() if m.isfile()}

    def _member(self, name: str) -> Any:
        member = self.members.get(name)
        f = self.tar.extractfile(member) if member is not None else None
        if f is None:
            raise OciforgeError(f"{self.path}: no {name} in the archive")
        return f

    def open_blob(self, digest: str) -> VerifyingReader:
        return VerifyingReader(self._member(f"blobs/{digest.replace(':', '/', 1)}"), digest)

    def read_bytes(self, digest: str) -> bytes:
        with self.open_blob(digest) as r:
            return r.read()

    def read_file(self, name: str) -> bytes:
        return bytes(self._member(name).read())

    def close(self) -> None:
        self.tar.close()


def _names(m: dict[str, Any]) -> list[str]:
    """What an index entry answers to: full reference, short name, tag."""
    ann = m.get("annotations", {})
    full = str(ann.get(CONTAINERD_NAME, ""))
    short = full.split("/", 1)[1] if full.startswith("docker.io/") else full
    return [n for n in (full, short, short.removeprefix("library/"),
                        str(ann.get(REF_NAME, ""))) if n]


class Location:
    """An image archive or OCI layout directory, opened once for several images."""

    def __init__(self, path: Path, store: Store) -> None:
        self.path = path
        self._record_for = store.record_picker()
        self.blobs: LayoutBlobs | ArchiveBlobs = LayoutBlobs(path) if path.is_dir() \
            else ArchiveBlobs(path)
        try:
            self.manifests = list(json.loads(self.blobs.read_file("index.json"))
                                  .get("manifests", []))
        except (OSError, ValueError) as e:
            self.close()
            raise OciforgeError(f"{path}: not an OCI layout or image archive ({e})") from None

    def find(self, want: str | None) -> dict[str, Any] | None:
        """The entry named `want` (full reference, short name or tag), or the only one."""
        if want is None:
            return self.manifests[0] if len(self.manifests) == 1 else None
        hits = [m for m in self.manifests if want in _names(m)]
        return hits[0] if len(hits) == 1 else None

    def load(self, want: str | None, label: str) -> StoredImage:
        entry = self.find(want)
        if entry is None:
            listed = ", ".join(sorted({(_names(m) or [str(m.get("digest"))])[0]
                                       for m in self.manifests})) or "none"
            ask = f"no image {want!r}" if want else f"{len(self.manifests)} images"
            raise RecipeError(f"{self.path}: {ask} (name one as PATH#NAME; images: {listed})")
        name = str(entry.get("annotations", {}).get(CONTAINERD_NAME) or label)
        return load_image(self.blobs, label, {**entry, "annotations": {
            "io.ociforge.reference": default_reference(name)}}, self._record_for)

    def close(self) -> None:
        if isinstance(self.blobs, ArchiveBlobs):
            self.blobs.close()


def open_image(arg: str, store: Store) -> tuple[StoredImage, Callable[[], None]]:
    """(image, close) for a store name, an archive or an OCI layout (`PATH[#NAME]`)."""
    path_text, _, want = arg.partition("#")
    path = Path(path_text)
    if arg in store.tags() or not path.exists():  # a tag wins over a file of that name
        return store.image(arg), lambda: None
    where = Location(path, store)
    try:
        return where.load(want or None, arg), where.close
    except BaseException:
        where.close()
        raise
