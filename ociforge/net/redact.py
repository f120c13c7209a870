"""One rule for printing a URL: no credentials in it, ever.

Applied to every URL or reference that is printed, recorded in provenance, locked,
or carried by an error. Only userinfo is dropped: what is left is what the user
wrote, so records stay comparable with earlier ones.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact(url: str) -> str:
    """`https://user:pw@host/x` → `https://host/x`; anything without userinfo as is."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url
