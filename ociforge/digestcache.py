"""File digests remembered by (size, mtime, ctime, inode, device), like git's index.

A `files` layer's input key is the digest of every file it takes from the checkout,
so without this a warm `assemble` would re-read them all (1.2 s for ~1 GB). An entry
is trusted only while the file's stat signature is unchanged, and is recorded only
for files whose mtime and ctime are older than RACY_NS, so that a file rewritten
within the same timestamp tick as its hashing is never served a stale digest.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .digests import file_hexdigest
from .store import atomic_write

RACY_NS = 2_000_000_000


class DigestCache:
    def __init__(self, path: Path | None = None) -> None:
        """`path`: where the entries persist (None: this process only)."""
        self.path = path
        self.dirty = False
        self.hits = 0
        self.entries: dict[str, list[object]] = {}
        try:
            data = json.loads(path.read_bytes()) if path is not None else None
            if isinstance(data, dict):
                self.entries = data
        except (OSError, ValueError):
            pass

    def sha256(self, path: Path) -> str:
        """Hex sha256 of a file, from the cache when its stat signature is unchanged."""
        st = os.stat(path)
        key = os.path.abspath(path)
        sig = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
        entry = self.entries.get(key)
        if entry is not None and entry[0] == sig:
            self.hits += 1
            return str(entry[1])
        digest = file_hexdigest(path)
        now = time.time_ns()
        if now - st.st_mtime_ns > RACY_NS and now - st.st_ctime_ns > RACY_NS:
            self.entries[key] = [sig, digest]
            self.dirty = True
        return digest

    def save(self) -> None:
        if self.dirty and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(self.entries, separators=(",", ":")).encode())
            self.dirty = False
