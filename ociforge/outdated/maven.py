"""Maven locks: every pinned coordinate against its repositories' maven-metadata.xml."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..sources.maven import MavenSource, available_versions
from .model import Finding, Report, Unchecked
from .versions import MAVEN, newer

if TYPE_CHECKING:
    from ..recipes import Project
    from ..sources.base import BuildContext
    from ..sources.maven import Coordinate


# Groups whose artifact versions follow a matrix variable (spark-hadoop-cloud and
# spark-connect follow the Spark version): a templated layer is outdated only when the
# version it should have exists now (it borrows another release's jar until then).
TIED = {"org.apache.spark": "version"}


class MavenProvider:
    name = "maven"

    def __init__(self, tied: dict[str, str] | None = None) -> None:
        self.tied = TIED if tied is None else tied
        # (repositories, group:artifact) → (versions, repositories listing it)
        self._seen: dict[tuple[str, str], tuple[list[str], list[str]]] = {}

    def check(self, project: Project, layers: list[str], ctx: BuildContext) -> Report:
        report = Report(checked={self.name: 0})
        for layer in layers:
            for src in project.layer(layer).all_sources():
                if isinstance(src, MavenSource):
                    for coord in src.coordinates():
                        self._coordinate(project, layer, src, coord, ctx, report)
        return report

    def _coordinate(self, project: Project, layer: str, src: MavenSource, coord: Coordinate,
                    ctx: BuildContext, report: Report) -> None:
        ga = f"{coord.group}:{coord.artifact}"
        key = (repr([r.model_dump() for r in src.repositories]), ga)
        if key not in self._seen:
            self._seen[key] = available_versions(src, ctx, coord)
        versions, found = self._seen[key]
        if not found:
            report.unchecked.append(Unchecked(self.name, layer,
                                              f"{ga}: no repository has a maven-metadata.xml"))
            return
        report.checked[self.name] += 1
        variable = self.tied.get(coord.group)
        wanted = project.layer_vars.get(layer, {}).get(variable) if variable else None
        if wanted is not None:
            if wanted != coord.version and wanted in versions:
                report.findings.append(Finding(
                    self.name, layer, ga, coord.version, wanted, wanted,
                    f"{ga}:{wanted} is published now; the layer borrows {coord.version}'s"))
            return
        newest, compatible = newer(coord.version, versions, MAVEN)
        if newest is not None:
            report.findings.append(Finding(self.name, layer, ga, coord.version, newest,
                                           compatible))
