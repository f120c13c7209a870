"""pip locks: every pinned distribution against the versions its index lists."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import FetchError
from ..net.redact import redact
from ..sources.pip import PipSource
from ..sources.pypi import file_version, list_files, normalize_name
from .model import Finding, Report, Unchecked
from .versions import PYTHON, newer

if TYPE_CHECKING:
    from ..recipes import Project
    from ..sources.base import BuildContext


def locked_pins(text: str) -> dict[str, str]:
    """name → version of a pip lock's `name==version --hash=…` lines."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "==" in line:
            name, _, rest = line.partition("==")
            out[name.strip()] = rest.split()[0]
    return out


def index_versions(index: str, package: str, ctx: BuildContext,
                   cache: dict[tuple[str, str], list[str]]) -> list[str]:
    """Versions of `package` with at least one file that is not yanked."""
    key = (index, normalize_name(package))
    if key not in cache:
        files = list_files(index, package, ctx.session, ctx.retry)
        cache[key] = list(dict.fromkeys(
            v for f in files if not f.yanked
            for v in [file_version(package, f.filename)] if v is not None))
    return cache[key]


class PipProvider:
    name = "pip"

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], list[str]] = {}

    def check(self, project: Project, layers: list[str], ctx: BuildContext) -> Report:
        report = Report(checked={self.name: 0})
        for layer in layers:
            for src in project.layer(layer).all_sources():
                if isinstance(src, PipSource):
                    self._source(layer, src, ctx, report)
        return report

    def _source(self, layer: str, src: PipSource, ctx: BuildContext, report: Report) -> None:
        path = src.lock_path(ctx)
        if not path.exists():
            report.unchecked.append(Unchecked(self.name, layer, f"{src.lock_file} is missing"))
            return
        index = src.index_url or ctx.index_url
        direct = {normalize_name(r.split("==")[0]) for r in src.requirements}
        for name, version in sorted(locked_pins(path.read_text()).items()):
            try:
                versions = index_versions(index, name, ctx, self._versions)
            except FetchError as e:
                if e.status != 404:
                    raise
                report.unchecked.append(Unchecked(self.name, layer,
                                                  f"{name} is not on {redact(index)}"))
                continue
            report.checked[self.name] += 1
            newest, compatible = newer(version, versions, PYTHON)
            if newest is not None:
                note = "" if normalize_name(name) in direct else "dependency (not in requirements)"
                report.findings.append(Finding(self.name, layer, name, version, newest,
                                               compatible, note))
