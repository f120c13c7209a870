"""Errors users see: one line each, with an exit code that means something."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from .net.redact import redact, redact_text


def suggest(name: str, valid: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the nearest valid names, or nothing."""
    close = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""


class OciforgeError(Exception):
    """Base class. `exit_code` is what the CLI exits with. The message is cleaned of
    URL credentials when the error is made (`net.redact.redact_text`), so no printer,
    JSON output or record that carries it can show them."""

    exit_code = 1

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (redact_text(args[0]), *args[1:])
        super().__init__(*args)


class ImageNotInStoreError(OciforgeError):
    """An image name that nothing is tagged as in the store."""

    def __init__(self, name: str, tagged: Iterable[str] = ()) -> None:
        near = suggest(name, tagged)
        hint = near if near else f"; run `ociforge assemble {name}`"
        super().__init__(f"image {name!r} is not in the store{hint}")
        self.name = name


class RecipeError(OciforgeError):
    """A recipe or layer definition is malformed or refers to something unknown."""

    exit_code = 3


class IntegrityError(OciforgeError):
    """Content did not match its pinned or recorded digest. A digest mismatch carries
    `subject`, `algorithm`, `expected` (lower-case hex) and `got`, so callers that add
    context read fields instead of parsing the message."""

    exit_code = 4

    def __init__(self, message: str, *, subject: str | None = None,
                 algorithm: str | None = None, expected: str | None = None,
                 got: str | None = None) -> None:
        super().__init__(message)
        self.subject = subject
        self.algorithm = algorithm
        self.expected = expected
        self.got = got

    @classmethod
    def mismatch(cls, subject: str, algorithm: str, expected: str, got: str
                 ) -> IntegrityError:
        """`sha256 mismatch for <subject>: pinned <expected>, got <got>`."""
        return cls(f"{algorithm} mismatch for {subject}: pinned {expected}, got {got}",
                   subject=subject, algorithm=algorithm, expected=expected.lower(), got=got)


class UnsafeArchiveError(IntegrityError):
    """An archive member would land outside the layer root."""


class StoreCorruptError(OciforgeError):
    """A blob in the store no longer matches its digest."""

    exit_code = 5


class FetchError(OciforgeError):
    """A download from the network failed. `url` (credentials removed) and `status`
    (the HTTP status, None when there was no answer) say where and how."""

    exit_code = 6

    def __init__(self, message: str, *, url: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.url = redact(url) if url is not None else None
        self.status = status


class NetworkError(FetchError):
    """No usable answer: refused, reset, timed out, TLS failure; after the retry
    budget where retrying made sense. `reason` is short and secret-free; `kind` is
    its stable name (`refused`, `reset`, `dns`, `timeout`, `tls`, `tls-untrusted`,
    `network`); `attempts` how many tries were made."""

    def __init__(self, message: str, *, url: str | None = None, reason: str,
                 kind: str = "network", attempts: int = 1) -> None:
        super().__init__(message, url=url)
        self.reason = reason
        self.kind = kind
        self.attempts = attempts


class LockError(RecipeError):
    """A lock file is missing, stale or unreadable where a key needs it."""


class UsageError(OciforgeError):
    """A command-line or environment value ociforge cannot use (exit 2, like click's)."""

    exit_code = 2


class BuildError(OciforgeError):
    """Building a layer failed for a reason other than the above."""

    exit_code = 7


class AuthError(OciforgeError):
    """A registry refused our credentials, or wanted some and none were found."""

    exit_code = 8
