"""One pass over a layer's tar stream: diff_id, compressed blob(s) and their digests.

The tar writer writes into a `LayerEncoder`; every byte is hashed once for the
diff_id and fed to one compressor per requested compression, whose output is hashed
and written straight into a store temp file. No temporary full copy exists.

Words: a layer's *compression* is gzip, zstd or none (the CLI's `--compression`).
Layer records on disk keep the older key `encoding_params` for the same thing.
This module knows the store only as `BlobStore` (a Protocol), so the layer record
and image model can import it while the store imports them.

gzip: python-isal's threaded igzip (pigz-like independent 1 MiB blocks, each with
the previous 32 KiB as dictionary). Its bytes depend on the data, level and block
size only, not on the thread count, and its header has mtime 0 and no file name.
zstd: python-zstandard with worker threads (output independent of their number).
Both libraries are pinned exactly in pyproject.toml, since another deflate or zstd
build may emit different bytes for the same input.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import isal
import zstandard
from isal import igzip_threaded

from .errors import OciforgeError
from .oci import Descriptor

MEDIA_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
COMPRESSIONS = tuple(MEDIA_TYPES)
GZIP_LEVEL = 1  # isal levels are 0-3; 1 is between zlib -1 and -6 in ratio, far faster
GZIP_BLOCK = 1 << 20
ZSTD_JOB_SIZE = 2 << 20
ZSTD_WRITE_SIZE = 1 << 20


def _zstd_level() -> int:
    raw = os.environ.get("OCIFORGE_ZSTD_LEVEL", "3")
    if not raw.isdigit() or not 1 <= int(raw) <= 19:
        raise OciforgeError(f"OCIFORGE_ZSTD_LEVEL must be 1..19, got {raw!r}")
    return int(raw)


ZSTD_LEVEL = _zstd_level()  # 3, as containerd and docker use; 1 for faster builds


def compression_params(compression: str) -> str:
    """Everything besides the data that decides a blob's bytes. Layer records keep it
    per blob, so a blob made with other settings or library versions is recompressed,
    never served as if it were the same."""
    if compression == "gzip":
        return f"isal-{isal.__version__}/level-{GZIP_LEVEL}/block-{GZIP_BLOCK}"
    if compression == "zstd":
        return f"zstandard-{zstandard.__version__}/level-{ZSTD_LEVEL}/job-{ZSTD_JOB_SIZE}"
    return "tar"


# Records written before parameters were recorded: gzip and plain tar were made with
# today's settings; zstd used another job size and must be recompressed.
LEGACY_PARAMS = {"gzip": compression_params("gzip"), "none": "tar"}


def worker_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


class BlobSink(Protocol):
    """A blob being written (the store's BlobWriter): hashed, committed or aborted."""

    size: int

    def write(self, data: bytes | memoryview) -> int: ...

    def commit(self, expected: str | None = None) -> str: ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """Where compressed blobs go (the store)."""

    def new_blob(self) -> BlobSink: ...


class _BlobFile:
    """File-like adapter so compressors can write into a blob being written."""

    def __init__(self, blob: BlobSink) -> None:
        self.blob = blob

    def write(self, data: bytes | memoryview) -> int:
        return self.blob.write(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return False


@dataclass(frozen=True)
class EncodedBlob:
    compression: str
    digest: str
    size: int

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.compression]

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size)


@dataclass(frozen=True)
class EncodedLayer:
    diff_id: str
    size: int  # uncompressed tar bytes
    blobs: dict[str, EncodedBlob]


class _Encoder:
    def __init__(self, compression: str, store: BlobStore) -> None:
        self.compression = compression
        self.blob = store.new_blob()
        self._raw = _BlobFile(self.blob)
        self._stream: Any
        self._pending: list[memoryview] = []  # gzip: the start of the next block
        self._pending_size = 0
        try:
            self._open(compression)
        except BaseException:
            self.blob.abort()  # gzip writes its header at once: the disk may be full
            raise

    def _open(self, compression: str) -> None:
        if compression == "gzip":
            # Block boundaries decide the bytes, so blocks are cut here at exact
            # multiples of GZIP_BLOCK and handed to the unbuffered writer (`.raw`);
            # the BufferedWriter in front of it would cut them by write sizes.
            self._buffered = igzip_threaded.open(
                self._raw, "wb", compresslevel=GZIP_LEVEL, threads=worker_threads(),
                block_size=GZIP_BLOCK)
            self._stream = self._buffered.raw
        elif compression == "zstd":
            # A fixed job size bounds memory (python-zstandard's buffers otherwise grow
            # with the thread count: ~240 MB at 8 threads) and, like the level, fixes
            # the output bytes whatever the number of threads.
            params = zstandard.ZstdCompressionParameters.from_level(
                ZSTD_LEVEL, threads=worker_threads(), job_size=ZSTD_JOB_SIZE,
                write_checksum=0, write_content_size=0)
            cctx = zstandard.ZstdCompressor(compression_params=params)
            # Output handed on in 1 MiB pieces (not 128 KiB): fewer hash and write calls;
            # where the pieces are cut does not change the bytes.
            self._stream = cctx.stream_writer(self._raw, write_size=ZSTD_WRITE_SIZE,  # type: ignore[arg-type]
                                              closefd=False)
        elif compression == "none":
            self._stream = self._raw
        else:
            raise ValueError(f"unknown compression {compression!r}; choose one of "
                             f"{COMPRESSIONS}")

    def write(self, data: bytes | memoryview) -> None:
        """gzip: cut into GZIP_BLOCK pieces, each byte copied once on the way (a block
        spanning two writes is joined from views of them; isal takes a `bytes` block
        as it is). The writes' data must not change afterwards: LayerEncoder gives
        `bytes`."""
        if self.compression != "gzip":
            self._stream.write(data)
            return
        view = memoryview(data)
        while len(view):
            need = GZIP_BLOCK - self._pending_size
            if len(view) < need:
                self._pending.append(view)
                self._pending_size += len(view)
                return
            if self._pending:
                self._stream.write(b"".join([*self._pending, view[:need]]))
                self._pending.clear()
                self._pending_size = 0
            else:
                self._stream.write(data if len(view) == need and isinstance(data, bytes)
                                   else view[:need])
            view = view[need:]

    def finish(self) -> EncodedBlob:
        if self.compression == "gzip":
            if self._pending:
                self._stream.write(b"".join(self._pending))
            self._buffered.close()
        elif self._stream is not self._raw:
            self._stream.close()
        digest = self.blob.commit()
        return EncodedBlob(self.compression, digest, self.blob.size)

    def abort(self) -> None:
        try:
            if self.compression == "gzip":
                self._buffered.close()
            elif self._stream is not self._raw:
                self._stream.close()
        except Exception:
            pass
        self.blob.abort()


class _Feeder:
    """Runs `consume` (the compressors: compressing, hashing and writing the blob) on a
    thread of its own, fed through a bounded queue, so that producing and hashing the
    tar (the caller's thread) overlaps it: both mostly run in C with the GIL released.
    Every compressor still sees the same bytes in the same order, so the blobs are the
    same. (Hashing the diff_id on a third thread was tried: no gain measurable on a
    loaded 2-core machine, where zstd's workers already use both cores.)"""

    DEPTH = 16  # pieces in flight (each at most tartree.COPY_BUFSIZE)

    def __init__(self, consume: Callable[[bytes | memoryview], object], name: str) -> None:
        self._consume = consume
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(self.DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._consume(data)
                except BaseException as e:  # handed to the writer's thread
                    self._error = e

    def put(self, data: bytes | memoryview) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def close(self) -> None:
        """Wait until everything put is compressed; raise what the thread raised."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error


class LayerEncoder:
    """A write-only stream that turns tar bytes into stored, digested blobs."""

    def __init__(self, store: BlobStore, compressions: list[str] | tuple[str, ...]) -> None:
        if not compressions:
            raise ValueError("at least one compression is needed")
        self._diff = hashlib.sha256()
        self.size = 0
        self._encoders: list[_Encoder] = []
        try:
            for compression in dict.fromkeys(compressions):
                self._encoders.append(_Encoder(compression, store))
        except BaseException:
            self.abort()
            raise
        self._feeder = _Feeder(self._encode, "layer-encoder")

    def _encode(self, data: bytes | memoryview) -> None:
        for enc in self._encoders:
            enc.write(data)

    def write(self, data: bytes | memoryview) -> int:
        if isinstance(data, memoryview) or not isinstance(data, bytes):
            data = bytes(data)  # the caller may reuse its buffer once this returns
        self._diff.update(data)
        self._feeder.put(data)
        n = len(data)
        self.size += n
        return n

    def flush(self) -> None:
        pass

    def finish(self) -> EncodedLayer:
        blobs = {}
        try:
            self._feeder.close()
            for enc in self._encoders:
                blobs[enc.compression] = enc.finish()
        except BaseException:
            self.abort()
            raise
        return EncodedLayer("sha256:" + self._diff.hexdigest(), self.size, blobs)

    def abort(self) -> None:
        feeder = getattr(self, "_feeder", None)
        if feeder is not None:
            with contextlib.suppress(BaseException):
                feeder.close()
        for enc in self._encoders:
            enc.abort()


def decompressing_reader(fileobj: Any, compression: str) -> BinaryIO:
    """A layer blob's bytes as its uncompressed tar stream. Readers use
    `image.open_uncompressed` (which also checks the digests), not this."""
    if compression == "gzip":
        from isal import igzip

        return igzip.IGzipFile(fileobj=fileobj, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(fileobj)  # type: ignore[return-value]
    return fileobj


def compression_of(media_type: str) -> str:
    """gzip, zstd or none, from a layer's media type (OCI's or Docker's)."""
    for compression, mt in MEDIA_TYPES.items():
        if mt == media_type:
            return compression
    if media_type.endswith("+gzip") or media_type.endswith(".tar.gzip"):
        return "gzip"
    if media_type.endswith("+zstd"):
        return "zstd"
    return "none"
