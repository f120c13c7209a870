"""Spark itself: the pyspark releases of each line the matrix builds, and newer lines.

Per line, not per layer: the matrix keeps older patch releases on purpose
(spark-4.1.0 beside 4.1.4), so a line is outdated when the index has a patch release
newer than the newest version the matrix builds of it; a line newer than every line
of the matrix is reported once, as a new line to add.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import FetchError
from ..sources.pypi import PypiSource
from .model import Finding, Report, Unchecked, series
from .pip import index_versions
from .versions import PYTHON, newer, python_key, python_prerelease

if TYPE_CHECKING:
    from ..recipes import Project
    from ..sources.base import BuildContext

NEW_LINE = "a new line: one block of data in recipes/spark.yaml"


class SparkProvider:
    name = "spark"

    def __init__(self, package: str = "pyspark") -> None:
        self.package = package
        self._versions: dict[tuple[str, str], list[str]] = {}

    def check(self, project: Project, layers: list[str], ctx: BuildContext) -> Report:
        report = Report(checked={self.name: 0})
        built: dict[str, tuple[str, str]] = {}   # version → (layer, index)
        for layer in layers:
            for src in project.layer(layer).all_sources():
                if isinstance(src, PypiSource) and src.package == self.package:
                    built[src.version] = (layer, src.index_url or ctx.index_url)
        if not built:
            return report
        newest_built = max(built, key=python_key)
        index = built[newest_built][1]
        try:
            upstream = [v for v in index_versions(index, self.package, ctx, self._versions)
                        if not python_prerelease(v)]
        except FetchError as e:
            if e.status != 404:
                raise
            report.unchecked.append(Unchecked(self.name, built[newest_built][0],
                                              f"{self.package} is not on the index"))
            return report
        lines: dict[tuple[int, ...], str] = {}
        for v in built:
            s = series(v)
            if s not in lines or python_key(v) > python_key(lines[s]):
                lines[s] = v
        for s, current in sorted(lines.items()):
            report.checked[self.name] += 1
            _, compatible = newer(current, upstream, PYTHON)
            if compatible is not None:
                report.findings.append(Finding(
                    self.name, built[current][0], f"{self.package} {_dotted(s)}", current,
                    compatible, compatible, f"add {compatible} to the matrix (one line)"))
        newest_line = max(lines)
        for s in sorted({series(v) for v in upstream if series(v) > newest_line}):
            top = max((v for v in upstream if series(v) == s), key=python_key)
            report.findings.append(Finding(self.name, built[newest_built][0],
                                           f"{self.package} {_dotted(s)}", newest_built, top,
                                           None, NEW_LINE))
        return report


def _dotted(s: tuple[int, ...]) -> str:
    return ".".join(str(x) for x in s)
