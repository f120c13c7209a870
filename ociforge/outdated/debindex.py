"""A Debian suite's package versions, read as apt reads them: `InRelease` verified
with the keyring by gpgv (or `Release` + `Release.gpg`; neither check for a `trusted`
local repository), then each `Packages` index checked against the sha256 and size the
verified Release states."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FetchError, IntegrityError
from ..net.redact import redact
from ..sources.debianlock import paragraphs

if TYPE_CHECKING:
    from ..sources.base import BuildContext

_DECOMPRESS = {".xz": lzma.decompress, ".gz": gzip.decompress, ".bz2": bz2.decompress,
               "": lambda b: b}


def _get(ctx: BuildContext, url: str) -> bytes | None:
    """The body, or None on 404/410."""
    from ..net.http import get_optional, request

    return get_optional(lambda: request(ctx.session, "GET", url, policy=ctx.retry), url)


def _gpgv(keyring: str, *files: Path, output: Path | None = None) -> None:
    cmd = ["gpgv", "--keyring", keyring, *(["--output", str(output)] if output else []),
           *map(str, files)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise IntegrityError(f"{files[0].name}: the signature does not verify with "
                             f"{keyring} ({proc.stderr.strip().splitlines()[-1:]})")


def _strip_clearsign(text: str) -> str:
    """The signed text of an InRelease that is not verified (a trusted repository)."""
    if not text.startswith("-----BEGIN PGP SIGNED MESSAGE-----"):
        return text
    body = text.split("\n\n", 1)[1]
    return body.split("\n-----BEGIN PGP SIGNATURE-----", 1)[0]


def release(ctx: BuildContext, base: str, keyring: str | None) -> str:
    """The suite's Release text (`base` = MIRROR/dists/SUITE), verified unless
    `keyring` is None."""
    with tempfile.TemporaryDirectory(prefix="ocf-deb-") as tmp:
        work = Path(tmp)
        inrelease = _get(ctx, f"{base}/InRelease")
        if inrelease is not None:
            if keyring is None:
                return _strip_clearsign(inrelease.decode())
            (work / "InRelease").write_bytes(inrelease)
            _gpgv(keyring, work / "InRelease", output=work / "Release")
            return (work / "Release").read_text()
        plain = _get(ctx, f"{base}/Release")
        if plain is None:
            raise FetchError(f"{redact(base)}: no InRelease or Release", url=base, status=404)
        if keyring is not None:
            sig = _get(ctx, f"{base}/Release.gpg")
            if sig is None:
                raise IntegrityError(f"{redact(base)}/Release is not signed (no Release.gpg)")
            (work / "Release").write_bytes(plain)
            (work / "Release.gpg").write_bytes(sig)
            _gpgv(keyring, work / "Release.gpg", work / "Release")
        return plain.decode()


def suite_versions(ctx: BuildContext, mirror: str, suite: str, components: list[str],
                   architecture: str, keyring: str | None) -> dict[str, list[str]]:
    """package → versions (binary packages of `architecture` and `all`) in the suite."""
    base = f"{mirror.rstrip('/')}/dists/{suite}"
    stated: dict[str, tuple[str, int]] = {}
    for stanza in paragraphs(release(ctx, base, keyring)):
        for line in stanza.get("SHA256", "").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                stated[parts[2]] = (parts[0], int(parts[1]))
    out: dict[str, list[str]] = {}
    for component in components:
        stem = f"{component}/binary-{architecture}/Packages"
        ext = next((e for e in _DECOMPRESS if stem + e in stated), None)
        if ext is None:
            raise FetchError(f"{redact(base)}/Release lists no {stem} index")
        digest, size = stated[stem + ext]
        data = _get(ctx, f"{base}/{stem}{ext}")
        if data is None or len(data) != size or hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"{redact(base)}/{stem}{ext} does not match the sha256 "
                                 "and size its Release states")
        for p in paragraphs(_DECOMPRESS[ext](data).decode()):
            if p.get("Package") and p.get("Architecture") in (architecture, "all"):
                out.setdefault(p["Package"], []).append(p["Version"])
    return out
