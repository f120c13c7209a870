"""Layer sources, one module per kind, all implementing `base.Source`: `lock` (may use
the network, writes lock files), `key_material` (pure), `populate` (fills a tree).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .archive import ArchiveSource
from .base import BuildContext, ImagePort, LockResult, Source
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
           "ImagePort", "LockResult", "MavenSource", "PipSource", "PypiSource", "Source",
           "SourceSpec"]
