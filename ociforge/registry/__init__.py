"""Registry output: push images from the store to an OCI registry and pull them back.

One module per job: `reference` parses names, `auth` finds credentials and caches
tokens, `retry` decides when and how long to wait, `client` speaks the distribution
API over `requests`, `upload` moves one blob, `push` and `pull` drive whole images.
"""

from __future__ import annotations

from ..errors import FetchError


class RegistryError(FetchError):
    """The registry refused a request or could not be reached (exit code 6)."""
