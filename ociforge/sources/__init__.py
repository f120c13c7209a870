"""Layer sources, one module per kind, behind one small interface:

    key_material(ctx) -> dict   what the layer's bytes depend on (no network)
    populate(tree, ctx) -> dict fill the tree; return provenance for SBOMs
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .archive import ArchiveSource
from .base import BuildContext
from .builder import BuilderSource
from .debian import DebianSource
from .files import FilesSource
from .maven import MavenSource
from .pip import PipSource
from .pypi import PypiSource

SourceSpec = Annotated[
    FilesSource | ArchiveSource | PypiSource | PipSource | DebianSource | BuilderSource
    | MavenSource,
    Field(discriminator="kind"),
]

__all__ = ["ArchiveSource", "BuildContext", "BuilderSource", "DebianSource", "FilesSource",
           "MavenSource", "PipSource", "PypiSource", "SourceSpec"]
