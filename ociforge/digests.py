"""Digests and canonical JSON: the identities everything else is keyed by."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
CHUNK = 1 << 20


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same object always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest_bytes(data: bytes) -> str:
    """The OCI digest of `data`: `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_hexdigest(path: Path | str, algorithm: str = "sha256") -> str:
    """The bare hex digest of a file (no `sha256:` prefix; `algorithm` may be sha1,
    sha512, …), streamed: memory stays flat whatever its size."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def is_digest(value: str) -> bool:
    return bool(_DIGEST_RE.match(value))


def digest_hex(digest: str) -> str:
    """The hex part of `sha256:<hex>`, refusing anything else (no path tricks)."""
    if not is_digest(digest):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return digest.split(":", 1)[1]


def key_of(definition: Any) -> str:
    """Input key: digest of the canonical JSON of a definition."""
    return digest_bytes(canonical_json(definition))
