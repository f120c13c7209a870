"""One pass gives the diff_id and the blob digest; bytes do not depend on thread count."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import pytest
import zstandard

from ociforge import compression
from ociforge.compression import LayerEncoder
from ociforge.store import Store

DATA = os.urandom(3 << 20) + b"spark " * 500_000


def _encode(store: Store, encs: list[str], chunk: int = 10240):
    enc = LayerEncoder(store, encs)
    for i in range(0, len(DATA), chunk):
        enc.write(DATA[i:i + chunk])
    return enc.finish()


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "none"])
def test_digests_describe_the_stored_bytes(tmp_path: Path, encoding: str) -> None:
    store = Store(tmp_path / "s")
    layer = _encode(store, [encoding])
    blob = layer.blobs[encoding]
    raw = store.blob_path(blob.digest).read_bytes()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == blob.digest
    assert len(raw) == blob.size
    plain = {"gzip": gzip.decompress, "none": lambda b: b,
             "zstd": lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b)}
    assert plain[encoding](raw) == DATA
    assert layer.diff_id == "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert list(store.tmp_dir.iterdir()) == []


def test_gzip_header_has_no_time_or_name(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    blob = _encode(store, ["gzip"]).blobs["gzip"]
    head = store.blob_path(blob.digest).read_bytes()[:10]
    assert head[:4] == b"\x1f\x8b\x08\x00" and head[4:8] == b"\0\0\0\0"


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_same_bytes_whatever_the_threads_and_write_sizes(tmp_path: Path, encoding: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    digests = set()
    # Writes smaller than a gzip block, exactly one, and spanning several.
    for threads, chunk in ((1, 10240), (4, 1 << 20), (2, 77777), (2, (3 << 20) + 5)):
        monkeypatch.setattr(compression, "worker_threads", lambda t=threads: t)
        store = Store(tmp_path / f"s{threads}")
        digests.add(_encode(store, [encoding], chunk).blobs[encoding].digest)
    assert len(digests) == 1


def test_several_encodings_in_one_pass(tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    layer = _encode(store, ["gzip", "zstd", "none"])
    assert set(layer.blobs) == {"gzip", "zstd", "none"}
    assert layer.blobs["none"].digest == layer.diff_id


class _FullDisk:
    """A store whose disk is full: blobs are written to /dev/full (every write fails
    with ENOSPC), as a real disk-full would make them."""

    def __init__(self) -> None:
        self.aborted = 0

    def new_blob(self) -> _FullDisk:
        self.file = open("/dev/full", "wb", buffering=0)  # noqa: SIM115 (closed in abort)
        self.size = 0
        return self

    def write(self, data: bytes | memoryview) -> int:
        return self.file.write(data)

    def commit(self, expected: str | None = None) -> str:
        raise AssertionError("a blob that could not be written was committed")

    def abort(self) -> None:
        self.aborted += 1
        self.file.close()


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "none"])
def test_a_failed_blob_write_fails_the_layer(encoding: str) -> None:
    # The compressors run on their own thread: its error must reach the builder.
    store = _FullDisk()
    enc = None
    with pytest.raises(OSError, match="No space left"):  # gzip: already its header
        try:  # as the layer builder does
            enc = LayerEncoder(store, [encoding])  # type: ignore[arg-type]
            for i in range(0, len(DATA), 1 << 20):
                enc.write(DATA[i:i + (1 << 20)])
            enc.finish()
        except BaseException:
            if enc is not None:
                enc.abort()
            raise
    assert store.aborted >= 1  # the blob is given up, never committed
