"""One rule for printing a URL or an image reference: no credentials in it, ever.

Applied to every URL or reference that is printed, recorded in provenance, locked,
logged or carried by an error. Only userinfo is dropped: what is left is what the
user wrote, so records stay comparable with earlier ones. `redact` takes one URL,
`redact_reference` one image reference (`user:pw@host/repo` is not a URL), and
`redact_text` every URL inside free text (a subprocess's output, an exception's
message), which is how error messages are cleaned when they are made.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# `scheme://userinfo@`: userinfo is what precedes the first '@' of the authority, which
# ends at the first '/', '?', '#' or whitespace.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@]*@")
# The digest a reference may end in (`repo@sha256:<hex>`): the only '@' that is not
# userinfo. OCI's grammar (algorithm `[a-z0-9]+([+._-][a-z0-9]+)*`, `:`, the encoded
# digest), with at least 32 encoded characters so that `user:pw@host:5000` is not
# one; `sha256:`/`sha512:` with anything after it is a (perhaps mistyped) digest.
_DIGEST_TAIL = re.compile(r"^(?:[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]{32,}"
                          r"|sha(?:256|512):[^/@]*)$")
_REF_SCHEMES = ("docker://", "oci://")


def redact(url: str) -> str:
    """`https://user:pw@host/x` → `https://host/x`; anything without userinfo as is.
    Never raises: a URL too broken to split (a bad port, a bad IPv6 literal) is
    cleaned as text."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def split_reference_userinfo(ref: str) -> tuple[str | None, str]:
    """(userinfo, the rest) of an image reference: `user:pw@host:5000/repo:tag` →
    (`user:pw`, `host:5000/repo:tag`); (None, ref) when it holds none. An '@' is
    userinfo unless what follows it is a digest (`repo@sha256:…`), so a password
    that itself holds '@' or ':' is cut off whole."""
    scheme = next((s for s in _REF_SCHEMES if ref.startswith(s)), "")
    body = ref[len(scheme):]
    at = body.rfind("@")
    if at < 0:
        return None, ref
    if _DIGEST_TAIL.match(body[at + 1:]):  # `repo@digest`: userinfo can only be earlier
        at = body.rfind("@", 0, at)
        if at < 0:
            return None, ref
    return body[:at], scheme + body[at + 1:]


def redact_reference(ref: str) -> str:
    """An image reference (or a URL) without userinfo: `user:pw@host/repo` →
    `host/repo`."""
    if "://" in ref and not ref.startswith(_REF_SCHEMES):
        return redact(ref)
    return split_reference_userinfo(ref)[1]


def redact_text(text: str) -> str:
    """Every `scheme://user:pw@` inside `text` without its userinfo (messages of
    other libraries, a subprocess's output)."""
    return _URL_USERINFO.sub(r"\1", text) if "@" in text else text
