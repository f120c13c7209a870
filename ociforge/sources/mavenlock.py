"""The `maven` source's lock file: one line per coordinate, written by `ociforge lock`.

    group:artifact:version sha256:<hex> <repository> size=<bytes> checksum=<algo> asc=<state>

`checksum` names the repository's checksum file the download was verified against
(the strongest it publishes: sha512, sha256, sha1, else md5); `asc` says whether the
artifact has a detached OpenPGP signature: `none`, `unverified:<issuer>` (a `.asc`
exists, signed by that key, not checked) or `verified:<fingerprint>` (checked against
the keyring in `$OCIFORGE_MAVEN_KEYRING`). Only the coordinate and the sha256 are the
pin: the layer's key is made of them alone, so the other fields can be added to an
older lock without rebuilding anything. Lines of the first format (coordinate, sha256,
optional repository) still parse; their extra fields read as unknown (`None`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import RecipeError
from ..store import atomic_write

LOCK_HEADER = (
    "# ociforge maven lock: coordinate, sha256, repository it came from, size in bytes,\n"
    "# the repository checksum file the download was verified against (the strongest it\n"
    "# publishes), and its .asc signature: asc=none, asc=unverified:<issuer key> (a\n"
    "# signature exists; not checked without $OCIFORGE_MAVEN_KEYRING), or\n"
    "# asc=verified:<fingerprint>. Written by `ociforge lock`; commit it.")
CHECKSUM_ALGOS = ("sha512", "sha256", "sha1", "md5")
_LINE = re.compile(r"^(\S+)\s+sha256:([0-9a-f]{64})(?:\s+(?![a-z]+=)(\S+))?"
                   r"((?:\s+[a-z]+=\S+)*)$")
_ASC = re.compile(r"^(none|unverified|unverified:[0-9A-F]{16,40}|verified:[0-9A-F]{40})$")


@dataclass(frozen=True)
class LockEntry:
    """One coordinate's pin and what is known of where it came from."""

    sha256: str
    repository: str = ""
    size: int | None = None
    checksum: str | None = None   # the repository checksum file it was verified against
    asc: str | None = None        # none | unverified[:issuer] | verified:<fingerprint>

    def fields(self) -> str:
        out = [f"sha256:{self.sha256}"]
        if self.repository:
            out.append(self.repository)
        if self.size is not None:
            out.append(f"size={self.size}")
        if self.checksum:
            out.append(f"checksum={self.checksum}")
        if self.asc:
            out.append(f"asc={self.asc}")
        return " ".join(out)


def _extra(path: Path, n: int, text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for token in text.split():
        key, _, value = token.partition("=")
        ok = {"size": value.isdigit(), "checksum": value in CHECKSUM_ALGOS,
              "asc": bool(_ASC.match(value))}.get(key, False)
        if not ok or key in out:
            raise RecipeError(f"{path}:{n}: {token!r} is not a lock field (size=<bytes>, "
                              f"checksum={'|'.join(CHECKSUM_ALGOS)}, asc=none|unverified[:KEY]"
                              "|verified:FINGERPRINT)")
        out[key] = value
    return out


def read_lock(path: Path, coordinate: Callable[[str], str] | None = None
              ) -> dict[str, LockEntry]:
    """coordinate → pin. One file may serve several maven layers. `coordinate` is
    a callable that normalises (and validates) a coordinate string."""
    if not path.exists():
        return {}
    entries: dict[str, LockEntry] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        try:
            coord = (coordinate(m.group(1)) if coordinate else m.group(1)) if m else None
        except ValueError:
            coord = None
        if m is None or coord is None:
            raise RecipeError(f"{path}:{n}: not a lock line (`group:artifact:version "
                              "sha256:<hex> repository size=… checksum=… asc=…`)")
        extra = _extra(path, n, m.group(4))
        entries[coord] = LockEntry(
            m.group(2), m.group(3) or "",
            int(extra["size"]) if "size" in extra else None,
            extra.get("checksum"), extra.get("asc"))
    return entries


def render_lock(entries: dict[str, LockEntry]) -> str:
    lines = [LOCK_HEADER] + [f"{coord} {entries[coord].fields()}" for coord in sorted(entries)]
    return "\n".join(lines) + "\n"


def write_lock(path: Path, entries: dict[str, LockEntry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, render_lock(entries).encode())
