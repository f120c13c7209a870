"""SBOMs of assembled images, from the provenance ociforge records for each layer.

`collect` reads the store (manifest → layers → layer records, plus the layer tars for
jars and repository files) into one format-free `Inventory`; `spdx` and `cyclonedx`
render it. The same image always gives the same bytes.
"""

from __future__ import annotations

from ..store import Store
from .collect import collect
from .model import Inventory

FORMATS = ("spdx", "cyclonedx")


def render(inv: Inventory, fmt: str = "spdx") -> bytes:
    if fmt == "cyclonedx":
        from . import cyclonedx

        return cyclonedx.render(inv)
    from . import spdx

    return spdx.render(inv)


def media_type(fmt: str) -> str:
    from . import cyclonedx, spdx

    return cyclonedx.MEDIA_TYPE if fmt == "cyclonedx" else spdx.MEDIA_TYPE


def generate(store: Store, name: str, fmt: str = "spdx", platform: str | None = None
             ) -> tuple[Inventory, bytes]:
    """The inventory of store image `name` (of `platform`) and its document in `fmt`."""
    inv = collect(store, name, platform)
    return inv, render(inv, fmt)


__all__ = ["FORMATS", "Inventory", "collect", "generate", "media_type", "render"]
