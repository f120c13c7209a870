"""Debian packages: every package of a Debian layer's lock against the current
`Packages` indexes of the lock's suites (Release signatures verified as apt does).

The lock (`layers/locks/<layer>.lock`: name, version, architecture, suite, source,
filename, sha256 of every installed package) and its reader,
`ociforge.sources.debianlock`, come with the Debian lock work; where this ociforge or
the project has none, each Debian layer is reported as not checked — never as up to
date.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..sources.debian import DebianSource
from .debindex import suite_versions
from .debversion import compare as compare_versions
from .debversion import key as version_key
from .model import Finding, Report, Unchecked

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..recipes import Project
    from ..sources.base import BuildContext

NOT_AVAILABLE = "debian: lock not available"
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class LockedPackage(Protocol):
    name: str
    version: str
    architecture: str
    suite: str


class Lock(Protocol):
    """What this provider reads of a Debian lock (debianlock.DebianLock)."""

    suites: Sequence[str]
    architecture: str
    components: Sequence[str]
    packages: Sequence[LockedPackage]


@dataclass(frozen=True)
class Where:
    """How to reach a suite: mirror URL and keyring (None: a trusted local repository)."""

    mirror: str
    keyring: str | None


def compare_lock(provider: str, layer: str, lock: Lock,
                 indexes: dict[str, dict[str, list[str]]]) -> list[Finding]:
    """The locked packages with a newer version in one of the lock's suites (`indexes`:
    suite → package → versions); a version from a `-security` suite says so."""
    out = []
    for p in sorted(lock.packages, key=lambda p: p.name):
        candidates = [(v, s) for s in lock.suites for v in indexes.get(s, {}).get(p.name, [])]
        if not candidates:
            continue
        newest, suite = max(candidates, key=lambda vs: version_key(vs[0]))
        if compare_versions(newest, p.version) > 0:
            note = (f"security update ({suite})" if suite.endswith("-security")
                    else f"from {suite}")
            out.append(Finding(provider, layer, p.name, p.version, newest, newest, note))
    return out


class DebianProvider:
    name = "debian"

    def __init__(self) -> None:
        self._indexes: dict[tuple[str, str, str, str, str | None], dict[str, list[str]]] = {}

    def check(self, project: Project, layers: list[str], ctx: BuildContext) -> Report:
        report = Report(checked={self.name: 0})
        for layer in layers:
            for src in project.layer(layer).all_sources():
                if isinstance(src, DebianSource):
                    self._layer(layer, src, ctx, report)
        return report

    def _layer(self, layer: str, src: DebianSource, ctx: BuildContext, report: Report) -> None:
        path = src.lock_path(ctx) if hasattr(src, "lock_path") \
            else ctx.project_path(f"layers/locks/{layer}.lock")
        reader = _lock_reader()
        why = (f"no {_relative(path, ctx)}" if not path.exists() else
               "this ociforge has no Debian lock reader" if reader is None else None)
        if why is not None or reader is None:
            report.unchecked.append(Unchecked(self.name, layer, f"{NOT_AVAILABLE} ({why})"))
            return
        lock: Lock = reader(path)
        indexes = {s: self._index(ctx, _where(src, s), s, lock) for s in lock.suites}
        report.checked[self.name] += len(lock.packages)
        report.findings += compare_lock(self.name, layer, lock, indexes)

    def _index(self, ctx: BuildContext, where: Where, suite: str, lock: Lock
               ) -> dict[str, list[str]]:
        key = (where.mirror, suite, " ".join(lock.components), lock.architecture,
               where.keyring)
        if key not in self._indexes:
            self._indexes[key] = suite_versions(ctx, where.mirror, suite,
                                                list(lock.components), lock.architecture,
                                                where.keyring)
        return self._indexes[key]


def _relative(path: Path, ctx: BuildContext) -> str:
    try:
        return str(path.relative_to(ctx.project_root))
    except ValueError:
        return str(path)


def _lock_reader() -> Any:
    try:
        return importlib.import_module("ociforge.sources.debianlock").read_lock
    except (ImportError, AttributeError):
        return None


def _where(src: Any, suite: str) -> Where:
    """The source's mirror for `suite` (its security mirror for `-security`) and keyring."""
    mirror_for = getattr(src, "mirror_for", None)
    mirror = mirror_for(suite) if mirror_for else src.mirror_url()
    if src.trusted:
        return Where(mirror, None)
    keyring = getattr(src, "keyring_path", None)
    return Where(mirror, keyring() if keyring else DEFAULT_KEYRING)
