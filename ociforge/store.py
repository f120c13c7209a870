"""The content-addressed store: an OCI image layout plus ociforge's own records.

Layout on disk (the top level is a valid OCI image layout that skopeo/umoci read):

    oci-layout, index.json, blobs/sha256/<hex>
    ociforge/layers/<key-hex>.json   layer records (the build cache)
    ociforge/tmp/                    blobs being written (same filesystem: rename is atomic)
    ociforge/quarantine/             corrupt blobs moved aside by fsck
    ociforge/locks/                  per-layer build locks, the gc lock, the index lock

Readers get images and layer records as typed values (`image()`, `record_for()`,
`read_record()`, `iter_records()`): the models live in records.py and image.py, which
do not import this module (image.py reads blobs through a Protocol this class meets).

Writes go to a temporary file, are fsynced, then renamed: a reader never sees a
partial blob, and a killed writer leaves only a temporary file that gc removes.
Writers hold the gc lock shared; gc holds it exclusively.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import secrets
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .digests import CHUNK, canonical_json, digest_bytes, digest_hex
from .errors import ImageNotInStoreError, StoreCorruptError
from .image import RecordFor, StoredImage, load_image
from .oci import MT_CONFIG as MT_CONFIG
from .oci import MT_DOCKER_LIST as MT_DOCKER_LIST
from .oci import MT_DOCKER_MANIFEST as MT_DOCKER_MANIFEST
from .oci import MT_INDEX, Descriptor, walk
from .oci import MT_MANIFEST as MT_MANIFEST
from .records import LayerRecord, pick_record

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
REF_NAME = "org.opencontainers.image.ref.name"


def default_store_path() -> Path:
    """`$OCIFORGE_STORE`, else `$XDG_CACHE_HOME/ociforge/store`, else ~/.cache/…"""
    env = os.environ.get("OCIFORGE_STORE")
    if env:
        return Path(env)
    return cache_home() / "store"


def cache_home() -> Path:
    """ociforge's cache root (downloads live here, shared by all stores)."""
    env = os.environ.get("OCIFORGE_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "ociforge"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, tmp_dir: Path | None = None) -> None:
    """Write a small file whole or not at all."""
    tmp_dir = tmp_dir or path.parent
    tmp = tmp_dir / f"{os.getpid()}-{path.name}.{secrets.token_hex(4)}.part"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class BlobWriter:
    """A blob being written: hashes as it goes, appears in the store only on commit."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.tmp_path = store.tmp_dir / f"{os.getpid()}-{secrets.token_hex(8)}.part"
        self._file: IO[bytes] = open(self.tmp_path, "wb")  # noqa: SIM115
        self._hash = hashlib.sha256()
        self.size = 0
        self.digest: str | None = None

    def write(self, data: bytes | memoryview) -> int:
        self._file.write(data)
        self._hash.update(data)
        n = len(data)
        self.size += n
        return n

    def commit(self, expected: str | None = None) -> str:
        """fsync, rename into blobs/, return the digest. Idempotent if the blob exists."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = "sha256:" + self._hash.hexdigest()
        if expected is not None and digest != expected:
            self.tmp_path.unlink(missing_ok=True)
            raise StoreCorruptError(f"content digest {digest} does not match expected {expected}")
        final = self._store.blob_path(digest)
        # Always rename, even over an existing blob: the new bytes are verified, the
        # old ones may have been damaged on disk. Same content, so readers can't tell.
        os.replace(self.tmp_path, final)
        _fsync_dir(final.parent)
        self.digest = digest
        return digest

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.tmp_path.unlink(missing_ok=True)


class VerifyingReader(io.RawIOBase):
    """Reads a blob and raises at EOF if its bytes do not hash to its name."""

    def __init__(self, path: Path, digest: str) -> None:
        super().__init__()
        self._f = open(path, "rb", buffering=0)  # noqa: SIM115
        self._digest = digest
        self._hash = hashlib.sha256()
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._f.readinto(b)
        if n:
            self._hash.update(memoryview(b)[:n])
        elif not self._checked:
            self._checked = True
            got = "sha256:" + self._hash.hexdigest()
            if got != self._digest:
                raise StoreCorruptError(
                    f"blob {self._digest} is corrupt on disk (content hashes to {got}); "
                    "run `ociforge store fsck` to quarantine it, then rebuild"
                )
        return n or 0

    def close(self) -> None:
        self._f.close()
        super().close()


class Store:
    """One local OCI layout with ociforge's cache records beside it."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.meta_dir = self.root / "ociforge"
        self.records_dir = self.meta_dir / "layers"
        self.tmp_dir = self.meta_dir / "tmp"
        self.quarantine_dir = self.meta_dir / "quarantine"
        self.locks_dir = self.meta_dir / "locks"
        self._init()

    def _init(self) -> None:
        for d in (self.blobs_dir, self.records_dir, self.tmp_dir, self.quarantine_dir,
                  self.locks_dir):
            d.mkdir(parents=True, exist_ok=True)
        with self.index_lock():
            layout = self.root / "oci-layout"
            if not layout.exists():
                atomic_write(layout, canonical_json(OCI_LAYOUT), self.tmp_dir)
            index = self.root / "index.json"
            if not index.exists():
                atomic_write(index, canonical_json(self._empty_index()), self.tmp_dir)

    @staticmethod
    def _empty_index() -> dict[str, Any]:
        return {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}

    # -- locks -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _flock(self, name: str, kind: int) -> Iterator[None]:
        path = self.locks_dir / name
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, kind)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def index_lock(self) -> contextlib.AbstractContextManager[None]:
        """Serialises read-modify-write of index.json across processes."""
        return self._flock("index.lock", fcntl.LOCK_EX)

    def writer_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held shared by anything that writes blobs; gc takes it exclusively."""
        return self._flock("gc.lock", fcntl.LOCK_SH)

    def gc_lock(self) -> contextlib.AbstractContextManager[None]:
        return self._flock("gc.lock", fcntl.LOCK_EX)

    def build_lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        """One builder per input key: a second process waits, then reuses the result."""
        return self._flock(f"layer-{digest_hex(key)}.lock", fcntl.LOCK_EX)

    # -- blobs -------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs_dir / digest_hex(digest)

    def has_blob(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def new_blob(self) -> BlobWriter:
        return BlobWriter(self)

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        if self.has_blob(digest, len(data)):
            return digest
        w = self.new_blob()
        try:
            w.write(data)
            return w.commit()
        except BaseException:
            w.abort()
            raise

    def open_blob(self, digest: str) -> VerifyingReader:
        path = self.blob_path(digest)
        if not path.exists():
            raise StoreCorruptError(f"blob {digest} is missing from the store {self.root}")
        return VerifyingReader(path, digest)

    def read_bytes(self, digest: str) -> bytes:
        with self.open_blob(digest) as r:
            return r.read()

    def read_json(self, digest: str) -> Any:
        return json.loads(self.read_bytes(digest))

    def check_blob_size(self, digest: str, size: int) -> None:
        """Cheap corruption check used on every cache hit: existence and length."""
        try:
            actual = self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise StoreCorruptError(f"blob {digest} is missing from the store") from None
        if actual != size:
            raise StoreCorruptError(
                f"blob {digest} is corrupt on disk: {actual} bytes, recorded {size}; "
                "run `ociforge store fsck`"
            )

    def iter_blobs(self) -> Iterator[str]:
        for p in sorted(self.blobs_dir.iterdir()):
            if not p.name.startswith(".") and len(p.name) == 64:
                yield "sha256:" + p.name

    # -- index -------------------------------------------------------------------------

    def read_index(self) -> dict[str, Any]:
        return json.loads((self.root / "index.json").read_bytes())

    def tags(self) -> dict[str, dict[str, Any]]:
        """Name → index entry (descriptor with annotations)."""
        out = {}
        for m in self.read_index().get("manifests", []):
            name = m.get("annotations", {}).get(REF_NAME)
            if name:
                out[name] = m
        return out

    def tag(self, name: str, desc: Descriptor, annotations: dict[str, str] | None = None) -> None:
        """Point `name` at a manifest, replacing any previous entry of that name."""
        entry = desc.to_json()
        entry["annotations"] = {**(annotations or {}), REF_NAME: name}
        with self.index_lock():
            index = self.read_index()
            manifests = [m for m in index.get("manifests", [])
                         if m.get("annotations", {}).get(REF_NAME) != name]
            manifests.append(entry)
            manifests.sort(key=lambda m: m.get("annotations", {}).get(REF_NAME, ""))
            index["manifests"] = manifests
            atomic_write(self.root / "index.json", canonical_json(index), self.tmp_dir)

    def untag(self, name: str) -> bool:
        with self.index_lock():
            index = self.read_index()
            before = len(index.get("manifests", []))
            index["manifests"] = [m for m in index.get("manifests", [])
                                  if m.get("annotations", {}).get(REF_NAME) != name]
            atomic_write(self.root / "index.json", canonical_json(index), self.tmp_dir)
            return len(index["manifests"]) != before

    # -- layer records -----------------------------------------------------------------

    def record_path(self, key: str) -> Path:
        return self.records_dir / f"{digest_hex(key)}.json"

    @staticmethod
    def _load_record(path: Path) -> LayerRecord | None:
        try:
            return LayerRecord.from_json(json.loads(path.read_bytes()))
        except (OSError, ValueError):
            # Missing, or not a record (a torn one cannot happen with atomic writes).
            return None

    def read_record(self, key: str) -> LayerRecord | None:
        return self._load_record(self.record_path(key))

    def write_record(self, record: LayerRecord) -> None:
        data = json.dumps(record.to_json(), sort_keys=True, indent=1).encode() + b"\n"
        atomic_write(self.record_path(record.input_key), data, self.tmp_dir)

    def iter_records(self) -> Iterator[LayerRecord]:
        """Every readable record, in file-name (input key) order."""
        for p in sorted(self.records_dir.glob("*.json")):
            record = self._load_record(p)
            if record is not None:
                yield record

    def drop_record(self, key: str) -> None:
        self.record_path(key).unlink(missing_ok=True)

    def _record_picker(self) -> RecordFor:
        """`record_for` over the records as they are now, read once."""
        by_diff: dict[str, list[LayerRecord]] = defaultdict(list)
        for record in self.iter_records():
            by_diff[record.diff_id].append(record)
        return lambda diff_id, blob: pick_record(by_diff.get(diff_id, ()), diff_id, blob)

    def record_for(self, diff_id: str, blob_digest: str | None = None) -> LayerRecord | None:
        """The record that describes the layer `diff_id` (stored as `blob_digest`), by
        the one rule every reader uses (`records.pick_record`)."""
        return pick_record(self.iter_records(), diff_id, blob_digest)

    # -- images ------------------------------------------------------------------------

    def image(self, name: str) -> StoredImage:
        """The image tagged `name` (OciforgeError naming it if it is not tagged)."""
        (image,) = self.images([name])
        return image

    def images(self, names: Iterable[str]) -> list[StoredImage]:
        """Several images, the layer records read once for all of them."""
        tags = self.tags()
        for name in names:
            if name not in tags:
                raise ImageNotInStoreError(name, tags)
        picker = self._record_picker()
        return [load_image(self, name, tags[name], picker) for name in names]

    # -- reachability ------------------------------------------------------------------

    def tagged_descriptors(self) -> list[Descriptor]:
        """The descriptors index.json lists (tags and other tools' entries), well-formed
        ones only."""
        out = []
        for m in self.read_index().get("manifests", []):
            try:
                out.append(Descriptor.from_json(m))
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def referenced_blobs(self, include_records: bool = True) -> set[str]:
        """Every blob reachable from index.json, plus those of cached layer records."""
        seen = {node.descriptor.digest
                for node in walk(self.tagged_descriptors(), self.read_bytes, strict=False)}
        if include_records:
            for rec in self.iter_records():
                seen.update(blob.digest for blob in rec.blobs.values())
        return seen

    def stale_tmp_files(self, min_age_s: float = 0) -> list[Path]:
        """Temporary files whose writer process is gone (killed mid-write)."""
        out = []
        now = time.time()
        for p in self.tmp_dir.iterdir():
            pid_part = p.name.split("-", 1)[0]
            alive = False
            if pid_part.isdigit():
                try:
                    os.kill(int(pid_part), 0)
                    alive = True
                except OSError as e:
                    alive = e.errno == errno.EPERM
            if not alive and now - p.stat().st_mtime >= min_age_s:
                out.append(p)
        return out


def remove_path(path: Path) -> None:
    """Remove a stale temporary file or staging directory."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def hash_file_matches(path: Path, digest: str) -> tuple[bool, str]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    got = "sha256:" + h.hexdigest()
    return got == digest, got
