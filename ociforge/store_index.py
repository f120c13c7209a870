"""The store's index.json as ociforge reads it: validated, or a StoreCorruptError
saying to run fsck; and what fsck salvages from a damaged one.

index.json is the only place that maps a tag to its manifest, and gc keeps only what
it reaches. So a reader never guesses at a damaged index (an empty or partial one
would make gc delete every image it lost): it refuses, and `store fsck` rebuilds it
(maintenance.py) from what this module salvages, the last good copy the store keeps
beside it (`ociforge/index.last-good.json`, rewritten after every write of the
index), and the manifests themselves.

Pure functions over bytes; imports only `digests`, `errors` and `oci`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .digests import is_digest
from .errors import StoreCorruptError
from .oci import Descriptor

REF_NAME = "org.opencontainers.image.ref.name"
FSCK_HINT = "run `ociforge store fsck` to recover it"


class IndexDamagedError(StoreCorruptError):
    """index.json is missing, not a file, not JSON, or not an image index. `reason`
    is the part after the path."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"the store index {path} {reason}; {FSCK_HINT}")
        self.path = path
        self.reason = reason


def entry_problem(entry: Any) -> str | None:
    """Why an index.json entry is not a well-formed descriptor (None if it is): a
    sha256 digest, a size, string annotations."""
    if not isinstance(entry, Mapping):
        return "is not a JSON object"
    try:
        desc = Descriptor.from_json(entry)
    except (KeyError, TypeError, ValueError):
        return "is not a descriptor (digest and size)"
    if not is_digest(desc.digest) or desc.size < 0:
        return f"names {desc.digest!r:.80}, not a sha256 digest"
    annotations = entry.get("annotations", {})
    if not isinstance(annotations, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
        return "has annotations that are not strings"
    return None


def parse_index(data: bytes, path: Path) -> dict[str, Any]:
    """index.json's bytes as a dict whose `manifests` are well-formed descriptors;
    IndexDamagedError otherwise."""
    try:
        index = json.loads(data)
    except ValueError as e:
        raise IndexDamagedError(path, f"is not valid JSON ({e})") from None
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise IndexDamagedError(path, "is not an image index (no `manifests` list)")
    for i, entry in enumerate(index["manifests"]):
        problem = entry_problem(entry)
        if problem:
            raise IndexDamagedError(path, f"is damaged: entry {i} {problem}")
    return index


def ref_name(entry: Mapping[str, Any]) -> str | None:
    name = entry.get("annotations", {}).get(REF_NAME)
    return str(name) if name else None


def salvage_entries(data: bytes) -> list[dict[str, Any]]:
    """Every complete, well-formed index entry found in the bytes of a damaged
    index.json (truncated, or with garbage in it), in file order: each JSON object
    that parses on its own and is a descriptor. Linear in practice: an object that
    parses is skipped whole."""
    text = data.decode("utf-8", errors="replace")
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    pos = text.find("{")
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except ValueError:
            pos = text.find("{", pos + 1)
            continue
        if isinstance(obj, dict) and "digest" in obj and entry_problem(obj) is None:
            found.append(obj)
            pos = text.find("{", end)
        else:
            pos = text.find("{", pos + 1)
    return found


def unique_entries(*sources: list[dict[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(source number, entry) for each entry of `sources`, the first of each tag name
    (or, untagged, of each digest) winning."""
    seen: set[str] = set()
    for n, entries in enumerate(sources):
        for entry in entries:
            key = ref_name(entry) or f"@{entry['digest']}"
            if key not in seen:
                seen.add(key)
                yield n, entry
