"""Registry output: push images from the store to an OCI registry and pull them back.

One module per job: `reference` parses names, `credentials` finds credentials,
`auth` answers challenges and caches tokens, `client` speaks the distribution API
over the shared HTTP path (`ociforge.net`: session, retry policy, redaction),
`upload` moves one blob, `push` and `pull` drive whole images.
"""

from __future__ import annotations

from ..errors import FetchError


class RegistryError(FetchError):
    """The registry refused a request or could not be reached (exit code 6)."""
