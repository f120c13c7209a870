"""Debian packages: the base's lock against the suites' Packages indexes.

TODO(lead, with the debian-lock branch): the Debian lock (`layers/locks/<layer>.lock`,
every installed package with version, architecture, source, suite, filename, sha256)
is being written on another branch; until its format is merged here, this provider
reports each Debian layer as not checked — never as up to date.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sources.debian import DebianSource
from .model import Report, Unchecked

if TYPE_CHECKING:
    from ..recipes import Project
    from ..sources.base import BuildContext

NOT_AVAILABLE = "debian: lock not available"


class DebianProvider:
    name = "debian"

    def check(self, project: Project, layers: list[str], ctx: BuildContext) -> Report:
        report = Report(checked={self.name: 0})
        for layer in layers:
            if any(isinstance(s, DebianSource) for s in project.layer(layer).all_sources()):
                lock = f"layers/locks/{layer}.lock"
                why = (f"{lock} exists, but this provider does not read its format yet"
                       if ctx.project_path(lock).exists() else f"no {lock}")
                report.unchecked.append(Unchecked(self.name, layer, f"{NOT_AVAILABLE} ({why})"))
        return report
