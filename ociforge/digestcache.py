"""File digests remembered by (size, mtime, ctime, inode, device), like git's index.

A `files` layer's input key is the digest of every file it takes from the checkout,
so without this a warm `assemble` would re-read them all (1.2 s for ~1 GB). An entry
is trusted only while the file's stat signature is unchanged, and is recorded only
for files whose mtime and ctime are older than RACY_NS, so that a file rewritten
within the same timestamp tick as its hashing is never served a stale digest.

A fresh checkout matches no stat signature, so a table of git blob id -> sha256
(`seed`, from `ociforge plan --json`) serves the files git vouches for unmodified
(gitfiles.clean_blobs): equal blob ids are equal bytes, so a table from another
commit or runner can never give a wrong digest, only no digest.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from .digests import file_hexdigest
from .gitfiles import clean_blobs
from .store import atomic_write

RACY_NS = 2_000_000_000


class DigestCache:
    def __init__(self, path: Path | None = None, checkout: Path | None = None,
                 git: Callable[[Path], dict[str, str]] = clean_blobs) -> None:
        """`path`: where the entries persist (None: this process only); `checkout`:
        the git work tree whose clean files a seeded table may serve."""
        self.path = path
        self.dirty = False
        self.hits = 0
        self.git_hits = 0
        self.checkout = checkout
        self._git = git
        self._clean: dict[str, str] | None = None  # real path -> blob id, asked once
        self.by_blob: dict[str, str] = {}  # git blob id -> sha256 (seeded or hashed here)
        self.collect = False  # note the blob ids of what is hashed (for `plan --json`)
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
        blob = self._blob_id(path) if self.by_blob or self.collect else None
        if blob is not None and blob in self.by_blob:
            self.git_hits += 1
            return self.by_blob[blob]
        digest = file_hexdigest(path)
        if blob is not None:
            self.by_blob[blob] = digest
        now = time.time_ns()
        if now - st.st_mtime_ns > RACY_NS and now - st.st_ctime_ns > RACY_NS:
            self.entries[key] = [sig, digest]
            self.dirty = True
        return digest

    def seed(self, table: dict[str, str]) -> None:
        """Take blob id -> sha256 pairs (hex both; anything else is skipped)."""
        for blob, digest in table.items():
            if (isinstance(blob, str) and isinstance(digest, str) and len(digest) == 64
                    and len(blob) in (40, 64)):
                self.by_blob[blob] = digest

    def _blob_id(self, path: Path) -> str | None:
        if self.checkout is None:
            return None
        if self._clean is None:
            self._clean = self._git(self.checkout)
        return self._clean.get(os.path.realpath(path))

    def save(self) -> None:
        if self.dirty and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, json.dumps(self.entries, separators=(",", ":")).encode())
            self.dirty = False
