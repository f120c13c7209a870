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
    """Every `pypi` source's package (pyspark in the Spark matrix), line by line."""

    name = "spark"

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], list[str]] = {}

    def check(self, project: Project, layers: list[str], ctx: BuildContext) -> Report:
        report = Report(checked={self.name: 0})
        built: dict[str, dict[str, tuple[str, str]]] = {}  # package → version → (layer, index)
        for layer in layers:
            for src in project.layer(layer).all_sources():
                if isinstance(src, PypiSource):
                    built.setdefault(src.package, {})[src.version] = (
                        layer, src.index_url or ctx.index_url)
        for package, versions in built.items():
            self._package(package, versions, ctx, report)
        return report

    def _package(self, package: str, built: dict[str, tuple[str, str]], ctx: BuildContext,
                 report: Report) -> None:
        newest_built = max(built, key=python_key)
        layer, index = built[newest_built]
        try:
            upstream = [v for v in index_versions(index, package, ctx, self._versions)
                        if not python_prerelease(v)]
        except FetchError as e:
            if e.status != 404:
                raise
            report.unchecked.append(Unchecked(self.name, layer, f"{package} is not on the "
                                                                "index"))
            return
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
                    self.name, built[current][0], f"{package} {_dotted(s)}", current,
                    compatible, compatible, f"add {compatible} to the matrix (one line)"))
        newest_line = max(lines)
        for s in sorted({series(v) for v in upstream if series(v) > newest_line}):
            top = max((v for v in upstream if series(v) == s), key=python_key)
            report.findings.append(Finding(self.name, layer, f"{package} {_dotted(s)}",
                                           newest_built, top, None, NEW_LINE))


def _dotted(s: tuple[int, ...]) -> str:
    return ".".join(str(x) for x in s)
