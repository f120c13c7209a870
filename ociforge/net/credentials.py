"""Credentials and the seam that attaches them to requests.

A `CredentialHook` is what a caller hands to `net.http.send`/`request` to authenticate:
Maven repositories pass `BasicAuth`, the registry client passes its `Authenticator`'s
per-scope hook (tokens and challenges stay in `registry/auth.py`). The header is set
per request, so `requests` drops it when a redirect leaves the host.
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Credentials:
    """A username and secret. `repr` never shows the secret."""

    username: str
    secret: str = field(repr=False)
    identity_token: bool = False  # the secret is an OAuth2 refresh token
    source: str = ""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, secret=<redacted>, source={self.source!r})"


class CredentialHook(Protocol):
    """Attaches auth to the requests of one caller."""

    def header(self, url: str) -> str | None:
        """The `Authorization` value to send to `url` up front, if any."""

    def challenge(self, url: str, www_authenticate: str | None, sent: str | None) -> str | None:
        """A 401 came back: the value to retry once with, None to hand the 401 to the
        caller, or raise when retrying is futile."""


def basic_header(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.secret}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class BasicAuth:
    """HTTP basic auth sent up front (Maven repositories); a 401 is final."""

    credentials: Credentials

    def header(self, url: str) -> str | None:
        return basic_header(self.credentials)

    def challenge(self, url: str, www_authenticate: str | None, sent: str | None) -> str | None:
        return None


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (`host[:port]`): the only hosts plain
    HTTP, and credentials over it, are allowed to without `--insecure`, because
    nothing on the wire can read the traffic."""
    name = host
    if name.startswith("["):
        name = name[1:name.index("]")]
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
