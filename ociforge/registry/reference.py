"""Image references (`registry/repo:tag@digest`) parsed the way Docker parses them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import OciforgeError
from ..net.credentials import is_loopback  # noqa: F401  (its old home; catalog imports it)
from ..net.redact import redact_reference, split_reference_userinfo

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
                      r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class ReferenceError(OciforgeError):
    """A malformed image reference: a usage error."""

    exit_code = 2


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.match(tag))


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port] as the user wrote it (docker.io for Docker Hub)
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """Where the HTTP API lives (Docker Hub's name differs from its API host)."""
        return DOCKER_HUB_API if self.registry in DOCKER_HUB_ALIASES else self.registry

    @property
    def hostname(self) -> str:
        host = self.registry
        if host.startswith("["):
            return host[1:host.index("]")]
        return host.rsplit(":", 1)[0] if host.count(":") == 1 else host

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.registry, self.repository, tag, None)

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest if pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _looks_like_host(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost" or part.startswith("[")


CREDENTIALS_IN_REFERENCE = (
    "credentials do not belong in the reference {shown!r}: put them in an auth file "
    "($REGISTRY_AUTH_FILE, or auths in $DOCKER_CONFIG/config.json, as `docker login` "
    "and `podman login` write them)")


def _refuse_userinfo(text: str) -> None:
    """`user:pw@host/repo` is refused without echoing what precedes the '@'. An '@'
    that is not userinfo must start a digest; a bad one is named alone."""
    userinfo, _ = split_reference_userinfo(text)
    if userinfo is None:
        return
    head, tail = text.rsplit("@", 1)
    if "/" in tail or (":" in head and "/" not in head) or userinfo != head:
        raise ReferenceError(CREDENTIALS_IN_REFERENCE.format(shown=redact_reference(text)))
    raise ReferenceError(f"invalid digest {tail!r} in a reference "
                         "(a digest is sha256:<64 hex digits>)")


def parse(ref: str, *, default_registry: str = DOCKER_HUB) -> Reference:
    """`ubuntu` → docker.io/library/ubuntu; `localhost/foo` → registry localhost.
    Userinfo (`user:pw@host/repo`) is refused: credentials live in auth files."""
    text = ref.strip()
    for scheme in ("docker://", "oci://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    _refuse_userinfo(text)
    ref = redact_reference(ref)  # from here on only what may be printed
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST_RE.match(digest):
            raise ReferenceError(f"invalid digest in reference {ref!r}")
    first, sep, rest = text.partition("/")
    if sep and _looks_like_host(first):
        registry, path = first, rest
    else:
        registry, path = default_registry, text
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not is_valid_tag(tag):
            raise ReferenceError(f"invalid tag {tag!r} in reference {ref!r}")
    if registry in DOCKER_HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    if not path or not _REPO_RE.match(path):
        raise ReferenceError(f"invalid repository name {path!r} in reference {ref!r} "
                             "(lower case letters, digits, and . _ - / separators)")
    return Reference(registry, path, tag, digest)
