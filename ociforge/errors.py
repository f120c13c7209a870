"""Errors users see: one line each, with an exit code that means something."""

from __future__ import annotations


class OciforgeError(Exception):
    """Base class. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ImageNotInStoreError(OciforgeError):
    """An image name that nothing is tagged as in the store."""

    def __init__(self, name: str) -> None:
        super().__init__(f"image {name!r} is not in the store; run `ociforge assemble {name}`")
        self.name = name


class RecipeError(OciforgeError):
    """A recipe or layer definition is malformed or refers to something unknown."""

    exit_code = 3


class IntegrityError(OciforgeError):
    """Content did not match its pinned or recorded digest."""

    exit_code = 4


class UnsafeArchiveError(IntegrityError):
    """An archive member would land outside the layer root."""


class StoreCorruptError(OciforgeError):
    """A blob in the store no longer matches its digest."""

    exit_code = 5


class FetchError(OciforgeError):
    """A download from the network failed."""

    exit_code = 6


class BuildError(OciforgeError):
    """Building a layer failed for a reason other than the above."""

    exit_code = 7


class AuthError(OciforgeError):
    """A registry refused our credentials, or wanted some and none were found."""

    exit_code = 8
