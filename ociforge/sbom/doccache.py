"""SBOM documents kept in the store by what they are made from.

`ociforge push` attaches each image's SPDX document; collecting and rendering it is
most of the CPU of a re-push that sends nothing. The document is a function of the
image (manifest, name, reference), its layers' records, the cached layer scans and
ociforge's own SBOM code, so it is stored under a key over exactly those, and a
re-push of an unchanged image reads it back instead of making it: same bytes, no
collection. The key covers the source of this package, so a changed SBOM writer
never serves an old document. One document per image name and format is kept (a
new one replaces the last), so the cache does not grow with rebuilds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import __version__
from ..digests import canonical_json
from ..image import StoredImage
from ..store import Store, atomic_write
from .layerscan import SCAN_VERSION

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

CACHE_VERSION = 1
_CODE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Document:
    """A rendered SBOM and the two facts a push needs about it."""

    data: bytes
    created: str  # the image's creation time (an annotation of the artifact)
    described: bool  # False: no layer had a record, so there is nothing to describe


def _code_digest() -> str:
    h = hashlib.sha256(__version__.encode())
    for path in sorted(_CODE.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def input_key(img: StoredImage, fmt: str) -> str:
    """Everything the document of `img` in `fmt` is made from, hashed."""
    inputs = {
        "v": CACHE_VERSION, "scan": SCAN_VERSION, "code": _code_digest(), "fmt": fmt,
        "name": img.name, "reference": img.reference, "manifest": img.descriptor.to_json(),
        # What `collect` reads of a record (not its blobs or build time, which change
        # when a layer gains a zstd blob or is rebuilt to the same bytes).
        "layers": [[layer.diff_id, *((r.name, r.source_kind, r.provenance_json)
                                     if (r := layer.record) else ())]
                   for layer in img.layers],
    }
    return hashlib.sha256(canonical_json(inputs)).hexdigest()


def _path(store: Store, name: str, fmt: str, key: str) -> Path:
    slot = hashlib.sha256(f"{fmt}\0{name}".encode()).hexdigest()[:16]
    return store.meta_dir / "sbom" / "documents" / f"{slot}-{key}.{fmt}"


def _read(path: Path) -> Document | None:
    with contextlib.suppress(OSError, ValueError):
        head, sep, data = path.read_bytes().partition(b"\n")
        meta = json.loads(head)
        if sep and isinstance(meta, dict) and hashlib.sha256(data).hexdigest() == meta.get(
                "sha256"):
            return Document(data, str(meta["created"]), bool(meta["described"]))
    return None


def _write(store: Store, path: Path, doc: Document) -> None:
    """Best effort (a read-only store still pushes): the document, after one JSON line
    that says what it is; other documents of the same image name and format go."""
    meta = {"created": doc.created, "described": doc.described,
            "sha256": hashlib.sha256(doc.data).hexdigest()}
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not fsynced: `_read` checks the sha256 line and a torn file is made again.
        atomic_write(path, json.dumps(meta, sort_keys=True).encode() + b"\n" + doc.data,
                     store.tmp_dir, durable=False)
        slot = path.name.split("-", 1)[0]
        for old in path.parent.glob(f"{slot}-*"):
            if old != path:
                old.unlink(missing_ok=True)


def _locate(store: Store, name: str, fmt: str, platform: str | None
            ) -> tuple[StoredImage, Path]:
    """The image and where its document for these inputs is (or would be) kept."""
    img = store.image(name, platform)
    slot = name if platform is None else f"{name}\0{platform}"
    return img, _path(store, slot, fmt, input_key(img, fmt))


def kept(store: Store, name: str, fmt: str = "spdx", platform: str | None = None
         ) -> Document | None:
    """The document kept for these inputs, if any."""
    return _read(_locate(store, name, fmt, platform)[1])


def document(store: Store, name: str, fmt: str = "spdx", platform: str | None = None
             ) -> Document:
    """The SBOM of store image `name` (of `platform`, for a multi-platform image: one
    document per platform, kept side by side): from the store when made before from
    the same inputs, else collected, rendered and kept."""
    img, path = _locate(store, name, fmt, platform)
    cached = _read(path)
    if cached is not None:
        return cached
    from . import render
    from .collect import collect_image

    inv = collect_image(store, img)
    doc = Document(render(inv, fmt), inv.created, bool(inv.components or inv.files))
    _write(store, path, doc)
    return doc


def _made_in_worker(root: str, name: str, fmt: str, platform: str | None
                    ) -> tuple[bytes, str, bool]:
    """`document` in a worker process, on the same store (the document is kept there)."""
    doc = document(Store(root), name, fmt, platform)
    return doc.data, doc.created, doc.described


class Documents:
    """The documents of a push of many images. Collecting and rendering one is ~0.1 s
    of pure-Python CPU (the json encoder writes indented output in Python), which
    threads cannot share: with `workers` > 1, documents not kept in the store are made
    in that many worker processes, started on the first one needed (a re-push, whose
    documents are all kept, starts none). A worker that fails — a layer whose bytes
    only this process can fetch, a worker killed — leaves the document to be made
    here, so the outcome is the same as without workers; only the time differs."""

    def __init__(self, store: Store, fmt: str = "spdx", workers: int = 1) -> None:
        self.store, self.fmt, self.workers = store, fmt, workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def document(self, name: str, platform: str | None = None) -> Document:
        cached = kept(self.store, name, self.fmt, platform)
        if cached is not None:
            return cached
        if self.workers > 1:
            with contextlib.suppress(Exception):
                data, created, described = self._workers().submit(
                    _made_in_worker, str(self.store.root), name, self.fmt, platform).result()
                return Document(data, created, described)
        return document(self.store, name, self.fmt, platform)

    def _workers(self) -> ProcessPoolExecutor:
        import multiprocessing  # only a push that makes many documents pays the import
        from concurrent.futures import ProcessPoolExecutor

        with self._lock:
            if self._pool is None:
                # forkserver: workers are forked from a clean server process, never from
                # this one, whose request threads may hold locks mid-operation.
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("forkserver"))
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
