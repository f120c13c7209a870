"""Input keys and the layer cache: a stored layer is never rebuilt.

input key = digest(canonical JSON of {format version, SOURCE_DATE_EPOCH, owner,
the source's key material}). The key material holds the digests of every input
(file contents, archive pins, lock files), so changing one input changes only that
layer's key. Keys are computed by the build session (after every lock is settled);
`LayerBuilder` turns a key into a stored layer, building only on a cache miss.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from . import LAYER_FORMAT_VERSION, __version__
from .compression import LayerEncoder, compression_params
from .digests import key_of
from .errors import BuildError, OciforgeError, StoreCorruptError
from .image import open_uncompressed
from .recipes import LayerDef
from .records import LayerRecord
from .sources.base import BuildContext
from .store import Store
from .tartree import Tree, write_tar

Progress = Callable[[str, int, int | None], None]  # (layer name, bytes done, total)


def input_key(layer: LayerDef, ctx: BuildContext) -> str:
    return key_of({
        "format": LAYER_FORMAT_VERSION,
        "sde": ctx.sde,
        "owner": list(layer.owner),
        "sources": [s.key_material(ctx) for s in layer.all_sources()],
    })


def _workdir(staging: Path, index: int) -> Path:
    """A fresh scratch directory for one source of a layer being built."""
    path = staging / str(index)
    path.mkdir(parents=True)
    return path


class RemoteCache(Protocol):
    """A layer cache shared between machines (registry/layercache.py): what the
    builder asks before building a layer this store lacks, and tells after."""

    def lookup(self, key: str) -> LayerRecord | None: ...

    def put(self, record: LayerRecord) -> None: ...


@dataclass
class BuildStats:
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    transcoded: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)  # taken from the remote cache


class LayerBuilder:
    """Builds layers on demand, through the store's cache of layer records."""

    def __init__(self, store: Store, ctx: BuildContext, progress: Progress | None = None,
                 remote: RemoteCache | None = None) -> None:
        self.store = store
        self.ctx = ctx
        self.progress = progress
        self.remote = remote
        self._prefetched: dict[str, LayerRecord] = {}
        self.stats = BuildStats()

    def _usable(self, rec: LayerRecord | None, compression: str) -> bool:
        if rec is None or not rec.has_params_for(compression):
            return False
        blob = rec.blob(compression)
        # Existence and size on every hit (a blob left in the remote cache counts);
        # a full re-hash happens when the blob is read.
        self.store.check_available(blob.digest, blob.size)
        return True

    def ensure(self, name: str, layer: LayerDef, key: str, compression: str) -> LayerRecord:
        """The record of `layer` (input key `key`) with a blob in `compression`, building
        only if needed."""
        rec = self._lookup(key, compression)
        if rec is not None:
            self.stats.reused.append(name)
            return rec
        with self.store.build_lock(key):
            rec = self._lookup(key, compression)  # another process may have built it meanwhile
            if rec is not None:
                self.stats.reused.append(name)
                return rec
            existing = self.store.read_record(key)
            if existing and self._has_any_blob(existing):
                rec = self._transcode(existing, compression)
                self.stats.transcoded.append(name)
            elif (rec := self._from_remote(key, compression)) is not None:
                self.stats.remote.append(name)
                self.store.write_record(rec)
                return rec
            else:
                rec = self._build(name, key, layer, compression)
                self.stats.built.append(name)
            self.store.write_record(rec)
            if self.remote is not None:
                self.remote.put(rec)
            return rec

    def _from_remote(self, key: str, compression: str) -> LayerRecord | None:
        """The remote cache's record of `key` if it has a blob in `compression` made
        with today's parameters (its blobs stay remote until read)."""
        if self.remote is None:
            return None
        # A miss is asked again: another runner may have pushed the layer meanwhile.
        rec = self._prefetched.pop(key, None) or self.remote.lookup(key)
        return rec if rec is not None and rec.has_params_for(compression) else None

    def prefetch(self, keys: Iterable[str], compression: str) -> None:
        """Look up in the remote cache, at once, every key of `keys` this store cannot
        serve: a stitching run makes one round trip's wait, not one per layer. Layers
        this store holds with their bytes are offered to the cache (`put`: nothing in
        read mode, one HEAD where the entry is there), so a warm runner fills a new
        cache, not only with what it builds."""
        if self.remote is None:
            return
        todo, local = [], []
        for k in dict.fromkeys(keys):
            if k in self._prefetched:
                continue
            rec = self._lookup(k, compression)
            if rec is None:
                todo.append(k)
            elif all(self.store.has_blob(b.digest, b.size) for b in rec.blobs.values()):
                local.append(rec)  # (blobs noted remote came from a cache: not offered)
        if len(todo) + len(local) > 1:
            # One thread per lookup (up to 32): a lookup is four small requests in a
            # row, so a layer waiting for a free thread doubles the stitch's wait.
            workers = min(32, len(todo) + len(local))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cache") as pool:
                puts = [pool.submit(self.remote.put, rec) for rec in local]
                found = zip(todo, pool.map(self.remote.lookup, todo), strict=True)
                self._prefetched.update((k, rec) for k, rec in found if rec is not None)
                for fut in puts:
                    fut.result()
        elif local:
            self.remote.put(local[0])

    def rebuild_blob(self, name: str, layer: LayerDef, key: str, compression: str) -> None:
        """Build a layer again to get its blob's bytes (the remote copy was bad); the
        build is reproducible, so the blob has the digest the record names."""
        with self.store.build_lock(key):
            rec = self._build(name, key, layer, compression)
            self.stats.built.append(name)
            self.store.write_record(rec)

    def _lookup(self, key: str, compression: str) -> LayerRecord | None:
        rec = self.store.read_record(key)
        try:
            return rec if self._usable(rec, compression) else None
        except StoreCorruptError:
            # Blob gone or damaged since the record was written: rebuild the layer.
            self.store.drop_record(key)
            return None

    def _has_any_blob(self, rec: LayerRecord) -> bool:
        return any(self.store.has_blob(b.digest, b.size) for b in rec.blobs.values())

    def _build(self, name: str, key: str, layer: LayerDef, compression: str) -> LayerRecord:
        staging = self.store.tmp_dir / f"{os.getpid()}-stage-{secrets.token_hex(6)}"
        started = time.monotonic()
        try:
            tree = Tree(owner=layer.owner)
            try:
                provenance = {"sources": [s.populate(tree, self.ctx, _workdir(staging, i))
                                          for i, s in enumerate(layer.all_sources())]}
            except OciforgeError:
                raise
            except OSError as e:
                raise BuildError(f"layer {name}: {e}") from e
            total = tree.total_size()
            done = 0

            def tick(n: int) -> None:
                nonlocal done
                done += n
                if self.progress:
                    self.progress(name, done, total)

            encoder = LayerEncoder(self.store, [compression])
            try:
                files = write_tar(tree, encoder, self.ctx.sde, tick)  # type: ignore[arg-type]
                encoded = encoder.finish()
            except BaseException:
                encoder.abort()
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return LayerRecord(
            name=name, input_key=key, diff_id=encoded.diff_id, size=encoded.size,
            files=files, source_kind=layer.kind,
            blobs={c: b.descriptor for c, b in encoded.blobs.items()},
            params={c: compression_params(c) for c in encoded.blobs},
            provenance_json=LayerRecord.provenance_text(provenance),
            built_by=f"ociforge {__version__}", built_at=int(time.time()),
            build_seconds=round(time.monotonic() - started, 3))

    def _transcode(self, rec: LayerRecord, compression: str) -> LayerRecord:
        """Add a compression to a stored layer by recompressing it (no source rebuild);
        the stored blob's digest and the record's diff_id are checked on the way."""
        blob = next(b for b in rec.blobs.values() if self.store.has_blob(b.digest, b.size))
        encoder = LayerEncoder(self.store, [compression])
        try:
            with open_uncompressed(self.store, blob, rec.diff_id) as tar:
                while chunk := tar.read(1 << 20):
                    encoder.write(chunk)
            encoded = encoder.finish()
        except BaseException:
            encoder.abort()
            raise
        return rec.with_blob(compression, encoded.blobs[compression].descriptor)
