"""Which repositories of which registry are known to hold a blob: the memory that
lets a push to a new repository mount layers instead of uploading them again.

Kept in the store (`ociforge/registry/blob-locations.json`): digests and repository
names only, no credentials. Best effort: a stale entry only costs a failed mount.
"""

from __future__ import annotations

import fcntl
import json
import threading

from ..store import Store, atomic_write

MAX_REPOS_PER_BLOB = 4


class BlobLocations:
    def __init__(self, store: Store) -> None:
        self.path = store.meta_dir / "registry" / "blob-locations.json"
        self._tmp = store.tmp_dir
        self._lock = threading.Lock()
        self._known: dict[str, dict[str, list[str]]] = self._read()
        self._new: set[tuple[str, str, str]] = set()
        self._saved: set[tuple[str, str, str]] = set()  # recorded here, then saved

    def _read(self) -> dict[str, dict[str, list[str]]]:
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def sources(self, registry: str, digest: str, exclude: str) -> list[str]:
        """Repositories (most recent first) that should hold `digest`, except `exclude`."""
        with self._lock:
            repos = self._known.get(registry, {}).get(digest, [])
            return [r for r in repos if r != exclude]

    def placed(self, registry: str, digest: str, repo: str) -> bool:
        """Whether this process saw `digest` land in (or found it in) `repo`: then it is
        there, and asking the registry again is a wasted round trip."""
        with self._lock:
            return (registry, digest, repo) in self._new or (registry, digest, repo) in self._saved

    def record(self, registry: str, digest: str, repo: str) -> None:
        with self._lock:
            self._add(self._known, registry, digest, repo)
            self._new.add((registry, digest, repo))

    @staticmethod
    def _add(table: dict[str, dict[str, list[str]]], registry: str, digest: str,
             repo: str) -> None:
        repos = table.setdefault(registry, {}).setdefault(digest, [])
        if repo in repos:
            repos.remove(repo)
        repos.insert(0, repo)
        del repos[MAX_REPOS_PER_BLOB:]

    def save(self) -> None:
        """Merge what this process learnt into the file (other pushes may have run)."""
        with self._lock:
            if not self._new:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_path = self.path.with_suffix(".lock")
            with open(lock_path, "a") as lock:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                table = self._read()
                for registry, digest, repo in sorted(self._new):
                    self._add(table, registry, digest, repo)
                # Not fsynced: best effort, and an unreadable file reads as empty.
                atomic_write(self.path, json.dumps(table, sort_keys=True).encode(),
                             self._tmp, durable=False)
            self._saved |= self._new
            self._new.clear()
