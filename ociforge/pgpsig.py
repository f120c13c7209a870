"""Detached OpenPGP signatures (`.asc` beside a Maven artifact): who claims to have
signed it, read from the signature packet, and, given a keyring, whether the claim
holds (`gpgv`, which trusts exactly the keys in the keyring it is given)."""

from __future__ import annotations

import base64
import binascii
import subprocess
from pathlib import Path

from .errors import IntegrityError

_ISSUER_FPR, _ISSUER_KEYID = 33, 16  # signature subpacket types (RFC 4880 5.2.3.1)


def _dearmor(text: str) -> bytes | None:
    lines = text.strip().splitlines()
    try:
        start = lines.index("-----BEGIN PGP SIGNATURE-----")
    except ValueError:
        return None
    body: list[str] = []
    in_headers = True
    for line in lines[start + 1:]:
        if line.startswith("-----END"):
            break
        if in_headers:
            in_headers = ":" in line  # armor headers end at the first blank line
            if in_headers or not line.strip():
                continue
        if line.startswith("="):
            break  # the CRC24 line
        body.append(line.strip())
    try:
        return base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        return None


def _packet_body(data: bytes) -> bytes | None:
    """The body of the first packet, if it is a signature packet (tag 2)."""
    if not data or not data[0] & 0x80:
        return None
    if data[0] & 0x40:  # new format
        tag, first = data[0] & 0x3F, data[1]
        if first < 192:
            size, off = first, 2
        elif first < 224:
            size, off = ((first - 192) << 8) + data[2] + 192, 3
        elif first == 255:
            size, off = int.from_bytes(data[2:6], "big"), 6
        else:
            return None  # partial lengths: not used for signatures
    else:
        tag, kind = (data[0] >> 2) & 0x0F, data[0] & 0x03
        n = {0: 1, 1: 2, 2: 4}.get(kind)
        if n is None:
            return None
        size, off = int.from_bytes(data[1:1 + n], "big"), 1 + n
    return data[off:off + size] if tag == 2 else None


def _subpackets(area: bytes) -> list[tuple[int, bytes]]:
    out, i = [], 0
    while i < len(area):
        first = area[i]
        if first < 192:
            size, i = first, i + 1
        elif first < 255:
            size, i = ((first - 192) << 8) + area[i + 1] + 192, i + 2
        else:
            size, i = int.from_bytes(area[i + 1:i + 5], "big"), i + 5
        if size < 1:
            break
        out.append((area[i] & 0x7F, area[i + 1:i + size]))
        i += size
    return out


def issuer(asc: str) -> str | None:
    """The signing key a `.asc` names (a v4 fingerprint, else a 64-bit key id), in
    upper-case hex; None when it is not a signature ociforge can read."""
    data = _dearmor(asc)
    body = _packet_body(data) if data else None
    if not body:
        return None
    if body[0] == 3 and len(body) >= 15:  # v3: the key id is in the body
        return body[7:15].hex().upper()
    if body[0] != 4 or len(body) < 6:
        return None
    hashed_len = int.from_bytes(body[4:6], "big")
    hashed = body[6:6 + hashed_len]
    rest = body[6 + hashed_len:]
    unhashed = rest[2:2 + int.from_bytes(rest[:2], "big")] if len(rest) >= 2 else b""
    found = _subpackets(hashed) + _subpackets(unhashed)
    for kind, value in found:
        if kind == _ISSUER_FPR and len(value) == 21:
            return value[1:].hex().upper()
    for kind, value in found:
        if kind == _ISSUER_KEYID and len(value) == 8:
            return value.hex().upper()
    return None


def verify(data: Path, asc: Path, keyring: Path, what: str) -> str:
    """The fingerprint of the key in `keyring` that made the good signature `asc` over
    `data`; IntegrityError naming `what` otherwise (bad signature, unknown key)."""
    proc = subprocess.run(["gpgv", "--status-fd", "1", "--keyring", str(keyring.resolve()),
                           str(asc), str(data)], capture_output=True, text=True, check=False)
    status = [line.split()[1:] for line in proc.stdout.splitlines()
              if line.startswith("[GNUPG:] ")]
    for fields in status:
        if fields[0] == "VALIDSIG" and proc.returncode == 0:
            return fields[10] if len(fields) > 10 else fields[1]  # the primary key
    for fields in status:
        if fields[0] == "BADSIG":
            raise IntegrityError(f"{what}: BAD signature from key {fields[1]} ({asc.name})")
        if fields[0] in ("NO_PUBKEY", "ERRSIG"):
            raise IntegrityError(f"{what}: signed by key {fields[1]}, which is not in the "
                                 f"keyring {keyring}")
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise IntegrityError(f"{what}: the signature {asc.name} could not be checked ({tail})")
