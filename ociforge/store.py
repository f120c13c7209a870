"""The content-addressed store: an OCI image layout plus ociforge's own records.

Layout on disk (the top level is a valid OCI image layout that skopeo/umoci read):

    oci-layout, index.json, blobs/sha256/<hex>
    ociforge/index.last-good.json    a copy of index.json as last written (store_index.py)
    ociforge/layers/<key-hex>.json   layer records (the build cache)
    ociforge/tmp/                    blobs being written (same filesystem: rename is atomic)
    ociforge/quarantine/             corrupt blobs moved aside by fsck
    ociforge/locks/                  per-layer build locks, the gc lock, the index lock
    ociforge/remote/<hex>.json       blobs a layer record names that live in a remote
                                     layer cache, not here (fetched when read)

Readers get images and layer records as typed values (`image()`, `record_for()`,
`read_record()`, `iter_records()`; `tagged()` for a name tagged with an index of
several platforms, which `tag_platforms()` writes): the models live in records.py
and image.py, which do not import this module (image.py reads blobs through a
Protocol this class meets).

Writes go to a temporary file, are fsynced, then renamed: a reader never sees a
partial blob, and a killed writer leaves only a temporary file that gc removes.
Writers hold the gc lock shared; gc holds it exclusively.

Damage is StoreCorruptError (exit 5) with what to run, never a guess: a damaged
index.json, a blob or record that is not a file, a directory of the layout that is a
file. What ociforge cannot read for a reason of the host (permission denied) stays an
OSError naming the path (exit 1).
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
import stat
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

from .digests import CHUNK, canonical_json, digest_bytes, digest_hex, is_digest
from .errors import ImageNotInStoreError, OciforgeError, StoreCorruptError
from .image import RecordFor, StoredImage, StoredIndex, load_image, load_index
from .oci import INDEX_TYPES, MANIFEST_TYPES, MT_INDEX, Descriptor, document_kind, walk
from .oci import MT_CONFIG as MT_CONFIG
from .oci import MT_DOCKER_LIST as MT_DOCKER_LIST
from .oci import MT_DOCKER_MANIFEST as MT_DOCKER_MANIFEST
from .oci import MT_MANIFEST as MT_MANIFEST
from .records import LayerRecord, pick_record
from .store_index import REF_NAME as REF_NAME
from .store_index import IndexDamagedError, parse_index, ref_name

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
# The order of an index's manifests: these first, any other platform after, by name.
PLATFORM_ORDER = ("linux/amd64", "linux/arm64")
_T = TypeVar("_T")


def platform_order(platform: str) -> tuple[int, str]:
    """Sort key of a platform in an index ociforge writes."""
    return (PLATFORM_ORDER.index(platform) if platform in PLATFORM_ORDER
            else len(PLATFORM_ORDER), platform)


class RemoteBlobs(Protocol):
    """Where a blob noted as remote comes from (a registry layer cache): `fetch`
    writes it into the store, verified against its digest, or raises."""

    def fetch(self, store: Store, digest: str, note: dict[str, Any]) -> None: ...


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


def is_special(path: Path) -> bool:
    """Whether `path` is a device, FIFO or socket (`/dev/null`, `/dev/stdout`, a named
    pipe), through symlinks. Such an output is written in place: renaming a finished file
    over it would replace the node itself — as root, the system's `/dev/null`."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def atomic_write(path: Path, data: bytes, tmp_dir: Path | None = None, *,
                 durable: bool = True) -> None:
    """Write a small file whole or not at all. `durable=False` for a cache whose reader
    checks what it reads and makes it again when it must (two fsyncs a file are the
    largest cost of writing it, and a stitching push writes dozens). A device or pipe
    (`is_special`) is written in place."""
    if is_special(path):
        with open(path, "wb") as f:
            f.write(data)
        return
    tmp_dir = tmp_dir or path.parent
    tmp = tmp_dir / f"{os.getpid()}-{path.name}.{secrets.token_hex(4)}.part"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if durable:
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
        try:
            os.replace(self.tmp_path, final)
        except IsADirectoryError:
            self.tmp_path.unlink(missing_ok=True)
            raise StoreCorruptError(f"{final} is a directory where blob {digest} belongs; "
                                    "run `ociforge store fsck` to quarantine it") from None
        _fsync_dir(final.parent)
        self.digest = digest
        return digest

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.tmp_path.unlink(missing_ok=True)


class VerifyingReader(io.RawIOBase):
    """Reads a blob and raises at EOF if its bytes do not hash to its name (a path,
    or an open file: a member of an image archive)."""

    def __init__(self, path: Path | IO[bytes], digest: str) -> None:
        super().__init__()
        self._f: Any = open(path, "rb", buffering=0) if isinstance(path, Path) \
            else path  # noqa: SIM115
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
        self.index_path = self.root / "index.json"
        self.last_good_index = self.meta_dir / "index.last-good.json"
        self.remote_dir = self.meta_dir / "remote"
        # Set by whoever can reach the remote cache (the CLI): lazy blobs come through it.
        self.remote: RemoteBlobs | None = None
        self._init()

    def _init(self) -> None:
        for d in (self.blobs_dir, self.records_dir, self.tmp_dir, self.quarantine_dir,
                  self.locks_dir):
            if d.exists() and not d.is_dir():
                raise StoreCorruptError(
                    f"the store {self.root} is damaged: {d} is not a directory; move it "
                    "aside, then run `ociforge store fsck`")
            d.mkdir(parents=True, exist_ok=True)
        with self.index_lock():
            layout = self.root / "oci-layout"
            if not layout.exists():
                atomic_write(layout, canonical_json(OCI_LAYOUT), self.tmp_dir)
            # A new store gets an empty index. One that holds blobs, or a last good
            # copy of its index, has lost its index: that is for fsck, not a fresh start.
            if not os.path.lexists(self.index_path) and self._is_new():
                self._write_index(self._empty_index())
            elif not self.last_good_index.exists():
                # A store written before the last good copy existed: take one now.
                with contextlib.suppress(OSError, StoreCorruptError):
                    self._write_last_good(canonical_json(self.read_index()))

    def _is_new(self) -> bool:
        with os.scandir(self.blobs_dir) as entries:
            return next(entries, None) is None and not self.last_good_index.exists()

    @staticmethod
    def _empty_index() -> dict[str, Any]:
        return {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}

    # -- locks -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _flock(self, name: str, kind: int) -> Iterator[None]:
        path = self.locks_dir / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except IsADirectoryError:
            raise StoreCorruptError(f"lock file {path} is a directory; remove it (locks hold "
                                    "nothing)") from None
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
        actual = self.blob_size(digest)
        return actual is not None and (size is None or actual == size)

    def blob_size(self, digest: str) -> int | None:
        """The size of the blob's file; None if no regular file is there (missing, a
        directory, a dangling link)."""
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

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

    def require_blob(self, digest: str) -> Path:
        """The blob's path; StoreCorruptError if it is missing or not a file. A blob
        noted as remote is fetched here, the first time its bytes are needed."""
        path = self.blob_path(digest)
        if not os.path.lexists(path):
            self.materialise(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise StoreCorruptError(
                f"blob {digest} is missing from the store {self.root}") from None
        if not stat.S_ISREG(st.st_mode):
            raise StoreCorruptError(f"blob {digest} is not a file in the store ({path}); "
                                    "run `ociforge store fsck` to quarantine it")
        return path

    def open_blob(self, digest: str) -> VerifyingReader:
        return VerifyingReader(self.require_blob(digest), digest)

    def read_bytes(self, digest: str) -> bytes:
        with self.open_blob(digest) as r:
            return r.read()

    def read_json(self, digest: str) -> Any:
        return json.loads(self.read_bytes(digest))

    # -- remote blobs (a layer cache in a registry) ----------------------------------

    def note_remote(self, digest: str, size: int, note: dict[str, Any]) -> None:
        """Remember that blob `digest` (`size` bytes) can be fetched as `note` says
        (registry, repository, the cache key); nothing is downloaded now."""
        self.remote_dir.mkdir(exist_ok=True)
        atomic_write(self.remote_dir / f"{digest_hex(digest)}.json",
                     canonical_json({**note, "digest": digest, "size": size}), self.tmp_dir)

    def remote_note(self, digest: str) -> dict[str, Any] | None:
        try:
            note = json.loads((self.remote_dir / f"{digest_hex(digest)}.json").read_bytes())
        except (OSError, ValueError):
            return None
        return note if isinstance(note, dict) and note.get("digest") == digest else None

    def drop_remote_note(self, digest: str) -> None:
        (self.remote_dir / f"{digest_hex(digest)}.json").unlink(missing_ok=True)

    def available(self, digest: str, size: int) -> bool:
        """Here with this size, or noted as remote with this size."""
        if self.has_blob(digest, size):
            return True
        note = self.remote_note(digest)
        return note is not None and note.get("size") == size

    def materialise(self, digest: str) -> None:
        """Fetch a remote blob into the store (no-op for one that is not noted)."""
        note = self.remote_note(digest)
        if note is None or self.has_blob(digest):
            return
        if self.remote is None:
            raise StoreCorruptError(
                f"blob {digest} is in the layer cache {note.get('registry')}/"
                f"{note.get('repository')}, not in the store {self.root}; run with "
                f"--cache {note.get('registry')}/{note.get('repository')}")
        self.remote.fetch(self, digest, note)

    def check_available(self, digest: str, size: int) -> None:
        """`check_blob_size`, where a blob noted as remote (same size) also passes."""
        if not self.has_blob(digest):
            note = self.remote_note(digest)
            if note is not None and note.get("size") == size:
                return
        self.check_blob_size(digest, size)

    def check_blob_size(self, digest: str, size: int) -> None:
        """Cheap corruption check used on every cache hit: existence and length (a
        blob noted as remote is fetched first: the caller is about to read it)."""
        if not os.path.lexists(self.blob_path(digest)):
            self.materialise(digest)
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            raise StoreCorruptError(f"blob {digest} is missing from the store") from None
        actual = st.st_size if stat.S_ISREG(st.st_mode) else -1
        if actual != size:
            raise StoreCorruptError(
                f"blob {digest} is corrupt on disk: {actual} bytes, recorded {size}; "
                "run `ociforge store fsck`"
            )

    def iter_blobs(self) -> Iterator[str]:
        """The digest of every entry of blobs/sha256 named like a blob (files of other
        names are not ociforge's and are left alone)."""
        for p in sorted(self.blobs_dir.iterdir()):
            if is_digest("sha256:" + p.name):
                yield "sha256:" + p.name

    # -- index -------------------------------------------------------------------------

    def read_index(self) -> dict[str, Any]:
        """index.json, every entry a well-formed descriptor; IndexDamagedError (exit 5,
        saying to run fsck) if it is missing, not a file or not an image index."""
        try:
            data = self.index_path.read_bytes()
        except FileNotFoundError:
            raise IndexDamagedError(self.index_path, "is missing") from None
        except IsADirectoryError:
            raise IndexDamagedError(self.index_path, "is a directory") from None
        return parse_index(data, self.index_path)

    def _write_index(self, index: dict[str, Any]) -> None:
        data = canonical_json(index)
        atomic_write(self.index_path, data, self.tmp_dir)
        self._write_last_good(data)

    def _write_last_good(self, data: bytes) -> None:
        """The copy fsck recovers tags from if index.json is damaged."""
        if self.last_good_index.is_dir():
            raise StoreCorruptError(f"{self.last_good_index} is a directory; run "
                                    "`ociforge store fsck` to quarantine it")
        atomic_write(self.last_good_index, data, self.tmp_dir)

    def ensure_last_good(self) -> None:
        """Write the last good copy if there is none (fsck, after quarantining one that
        was not a file). One that differs from index.json is left alone: the index may
        have been emptied by another tool, and the copy is what could bring tags back."""
        if not os.path.lexists(self.last_good_index):
            self._write_last_good(canonical_json(self.read_index()))

    def replace_index(self, index: dict[str, Any]) -> None:
        """Write a whole index (fsck's recovery); its entries must be well-formed."""
        parse_index(canonical_json(index), self.index_path)
        with self.index_lock():
            self._write_index(index)

    def tags(self) -> dict[str, dict[str, Any]]:
        """Name → index entry (descriptor with annotations)."""
        out = {}
        for m in self.read_index()["manifests"]:
            name = ref_name(m)
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
            self._write_index(index)

    def untag(self, name: str) -> bool:
        with self.index_lock():
            index = self.read_index()
            before = len(index.get("manifests", []))
            index["manifests"] = [m for m in index.get("manifests", [])
                                  if m.get("annotations", {}).get(REF_NAME) != name]
            self._write_index(index)
            return len(index["manifests"]) != before

    # -- layer records -----------------------------------------------------------------

    def record_path(self, key: str) -> Path:
        return self.records_dir / f"{digest_hex(key)}.json"

    @staticmethod
    def load_record_file(path: Path) -> LayerRecord:
        """The record in `path`: StoreCorruptError if it is not a file or not a record
        (a torn one cannot happen with atomic writes: it was damaged), OSError if the
        host will not let us read it."""
        try:
            return LayerRecord.from_json(json.loads(path.read_bytes()))
        except IsADirectoryError:
            reason = "is a directory"
        except ValueError as e:  # not JSON, or not a record
            reason = f"is not a layer record ({str(e)[:80]})"
        raise StoreCorruptError(f"layer record {path} {reason}; run `ociforge store fsck` "
                                "to quarantine it")

    def _load_record(self, path: Path) -> LayerRecord | None:
        try:
            return self.load_record_file(path)
        except (OSError, StoreCorruptError):
            return None

    def read_record(self, key: str) -> LayerRecord | None:
        """The cached layer of `key`; None if there is none or it cannot be parsed (the
        build rewrites it). A path that is not a file is damage no rebuild can
        overwrite: StoreCorruptError."""
        path = self.record_path(key)
        if path.is_dir():
            self.load_record_file(path)  # raises, naming it
        return self._load_record(path)

    def write_record(self, record: LayerRecord) -> None:
        data = json.dumps(record.to_json(), sort_keys=True, indent=1).encode() + b"\n"
        atomic_write(self.record_path(record.input_key), data, self.tmp_dir)

    def record_files(self) -> list[Path]:
        return sorted(self.records_dir.glob("*.json"))

    def iter_records(self, strict: bool = False) -> Iterator[LayerRecord]:
        """Every readable record, in file-name (input key) order. `strict` (gc): a
        record that cannot be read raises (StoreCorruptError, or OSError from the
        host) instead of being skipped, since what it names is unknown."""
        for p in self.record_files():
            record = self.load_record_file(p) if strict else self._load_record(p)
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

    def record_picker(self) -> RecordFor:
        """`record_for` for many lookups: the records read once, as they are now."""
        return self._record_picker()

    def record_for(self, diff_id: str, blob_digest: str | None = None) -> LayerRecord | None:
        """The record that describes the layer `diff_id` (stored as `blob_digest`), by
        the one rule every reader uses (`records.pick_record`)."""
        return pick_record(self.iter_records(), diff_id, blob_digest)

    # -- images ------------------------------------------------------------------------

    def image(self, name: str, platform: str | None = None) -> StoredImage:
        """The image tagged `name` (OciforgeError naming it if it is not tagged). A
        name tagged with an index stands for its image of `platform`, the host's by
        default (PlatformNotInImageError naming the platforms it has)."""
        (image,) = self.images([name], platform)
        return image

    def images(self, names: Iterable[str], platform: str | None = None) -> list[StoredImage]:
        """Several images (each of `platform`, as `image`), the layer records read
        once for all of them."""
        return self._load(list(names), lambda name, entry, picker: load_image(
            self, name, entry, picker, platform))

    def tagged(self, names: Iterable[str]) -> list[StoredImage | StoredIndex]:
        """What each name is tagged with, whole: a `StoredIndex` (every platform) for a
        name tagged with an index, else its `StoredImage` (outputs that carry every
        platform: the OCI layout, the catalog)."""
        def load(name: str, entry: dict[str, Any], picker: RecordFor
                 ) -> StoredImage | StoredIndex:
            if self.is_index(entry):
                return load_index(self, name, entry, picker)
            return load_image(self, name, entry, picker)

        return self._load(list(names), load)

    def platforms(self, name: str) -> list[str]:
        """The platforms image `name` has (`os/architecture`), in its index's order;
        one for a name tagged with a single manifest."""
        (tagged,) = self.tagged([name])
        return tagged.platforms if isinstance(tagged, StoredIndex) else [tagged.platform]

    def is_index(self, entry: dict[str, Any]) -> bool:
        """Whether a tag (an index.json entry) names an image index."""
        desc = Descriptor.from_json(entry)
        if desc.media_type in INDEX_TYPES:
            return True
        if desc.media_type in MANIFEST_TYPES:
            return False
        return document_kind(desc.media_type, self.read_json(desc.digest)) == "index"

    def _load(self, names: list[str], load: Callable[[str, dict[str, Any], RecordFor], _T]
              ) -> list[_T]:
        tags = self.tags()
        for name in names:
            if name not in tags:
                raise ImageNotInStoreError(name, tags)
        picker = self._record_picker()
        out = []
        for name in names:
            try:
                out.append(load(name, tags[name], picker))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                # A document that hashes right but is not what its descriptor says.
                raise StoreCorruptError(
                    f"image {name!r} ({tags[name]['digest']}) is damaged: "
                    f"{type(e).__name__}: {str(e)[:120]}; run `ociforge store fsck`") from e
        return out

    def tag_platforms(self, name: str, images: Sequence[StoredImage],
                      annotations: dict[str, str] | None = None) -> Descriptor:
        """Tag `name` with an OCI image index listing `images` (one per platform, each
        manifest descriptor carrying platform {os, architecture}), in a fixed order
        (linux/amd64, linux/arm64, then any other by name), so the same images make
        the same index digest whatever order they come in. With one image, tags that
        manifest itself (a single-platform image stays exactly as `tag` makes it)."""
        if not images:
            raise OciforgeError(f"image {name!r}: no platform images to tag")
        platforms = [img.platform for img in images]
        unknown = [img.descriptor.digest for img in images if not (img.os and img.architecture)]
        if unknown:
            raise OciforgeError(f"image {name!r}: the config of {unknown[0]} names no os and "
                                "architecture, so an index cannot say its platform")
        if len(set(platforms)) != len(platforms):
            raise OciforgeError(f"image {name!r}: two images of one platform "
                                f"({', '.join(sorted(platforms))}); an index lists one each")
        if len(images) == 1:
            self.tag(name, images[0].descriptor, annotations)
            return images[0].descriptor
        ordered = sorted(images, key=lambda img: platform_order(img.platform))
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [
            {**img.descriptor.to_json(), "mediaType": img.descriptor.media_type or MT_MANIFEST,
             "platform": {"architecture": img.architecture, "os": img.os}}
            for img in ordered]}
        data = canonical_json(index)
        with self.writer_lock():  # gc must not take the index between write and tag
            desc = Descriptor(MT_INDEX, self.put_bytes(data), len(data))
            self.tag(name, desc, annotations)
        return desc

    # -- reachability ------------------------------------------------------------------

    def referenced_blobs(self, include_records: bool = True) -> set[str]:
        """Every blob reachable from index.json, plus those of cached layer records.

        Proof, not a best effort (gc deletes the rest): a document of a tagged graph
        (manifest, index, index child) that cannot be read raises StoreCorruptError
        naming the tag and the digest (OciforgeError, exit 1, when the host refused
        the read), and so does a layer record that cannot be read."""
        seen: set[str] = set()
        for entry in self.read_index()["manifests"]:
            seen.update(self._reachable(entry))
        if include_records:
            for rec in self.iter_records(strict=True):
                seen.update(blob.digest for blob in rec.blobs.values())
        return seen

    def _reachable(self, entry: dict[str, Any]) -> set[str]:
        root = Descriptor.from_json(entry)
        name = ref_name(entry)
        what = f"image {name!r}" if name else "an untagged index entry"
        hint = "run `ociforge store fsck`, then assemble or pull it again" + (
            f", or drop the tag: `ociforge store untag {name}`" if name else "")
        try:
            return {node.descriptor.digest for node in walk([root], self.read_bytes)}
        except (StoreCorruptError, ValueError) as e:  # ValueError: DocumentError, digest
            reason = str(e).split("; run ")[0]
            raise StoreCorruptError(f"{what} ({root.digest}) cannot be read: {reason}; "
                                    f"{hint}") from e
        except OSError as e:
            raise OciforgeError(f"{what} ({root.digest}) cannot be read: "
                                f"{e.filename}: {e.strerror}") from e

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
