"""A deterministic Java KeyStore (JKS) of trusted certificates.

Debian's ca-certificates-java writes /etc/ssl/certs/java/cacerts with the current
time in every entry, so the base layer would differ on every build. ociforge
rewrites it from the same certificates with the entry time set to
SOURCE_DATE_EPOCH, in sorted alias order: same certificates, same bytes.

Format (big-endian): magic FEEDFEED, version 2, entry count; per trusted-cert
entry: tag 2, alias (modified UTF-8, length-prefixed), time in ms, "X.509",
DER length + bytes; then SHA-1 over password (UTF-16BE) + "Mighty Aphrodite" +
everything before. Written by hand: no maintained PyPI package writes JKS.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct

DEFAULT_PASSWORD = "changeit"
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


def _utf(s: str) -> bytes:
    data = s.encode("utf-8")
    return struct.pack(">H", len(data)) + data


def pem_certificates(pem: bytes) -> list[bytes]:
    """DER bytes of every certificate in a PEM file."""
    return [base64.b64decode(b"".join(m.group(1).split())) for m in _PEM.finditer(pem)]


def write_jks(certs: dict[str, bytes], epoch: int, password: str = DEFAULT_PASSWORD) -> bytes:
    """A JKS holding `certs` (alias → DER) as trusted certificate entries."""
    body = bytearray(struct.pack(">III", 0xFEEDFEED, 2, len(certs)))
    for alias in sorted(certs, key=str.lower):
        der = certs[alias]
        body += struct.pack(">I", 2) + _utf(alias.lower()) + struct.pack(">Q", epoch * 1000)
        body += _utf("X.509") + struct.pack(">I", len(der)) + der
    digest = hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + bytes(body))
    return bytes(body) + digest.digest()
