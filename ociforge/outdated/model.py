"""What `ociforge outdated` reports, and the contract of its providers.

A provider knows one kind of pin (a pip lock, a Maven lock, the Spark versions of
the matrix, the Debian lock) and asks its upstream what is newer. It only reads: no
lock, store or cache is written.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..recipes import Project
    from ..sources.base import BuildContext


@dataclass(frozen=True)
class Finding:
    """One pin with a newer release upstream. `newest_compatible` is the newest in
    the same major.minor series (a patch release: the usual update); `newest` the
    newest at all (it may be a new series the recipe must opt into)."""

    provider: str            # debian | pip | maven | spark
    layer: str               # the layer (or, for spark, the matrix line's newest layer)
    name: str                # package, coordinate without version, or "pyspark 4.1"
    current: str
    newest: str
    newest_compatible: str | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Unchecked:
    """A layer a provider could not check, and why (never read as "up to date")."""

    provider: str
    layer: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # provider → pins compared

    def add(self, other: Report) -> None:
        self.findings += other.findings
        self.unchecked += other.unchecked
        for k, n in other.checked.items():
            self.checked[k] = self.checked.get(k, 0) + n

    def to_json(self) -> dict[str, Any]:
        return {"outdated": [f.to_json() for f in self.findings],
                "unchecked": [u.to_json() for u in self.unchecked],
                "checked": dict(self.checked)}


class Provider(Protocol):
    """Compares one kind of pin of the named layers with its upstream."""

    name: str

    def check(self, project: Project, layers: list[str], ctx: BuildContext) -> Report: ...


# -- versions -----------------------------------------------------------------------

_NUMERIC = re.compile(r"^(\d+(?:\.\d+)*)(.*)$")
# Qualifiers of Maven versions that are not releases (SNAPSHOT, milestones, candidates).
_PRE = re.compile(r"(snapshot|alpha|beta|milestone|preview|^m\d|^rc|^cr|^a\d|^b\d|^ea|^dev)",
                  re.I)


def maven_key(version: str) -> tuple[tuple[int, ...], bool, str]:
    """A sort key for Maven versions as Spark add-ons use them (`1.12.0`, `26.08.1`,
    `4.2.0-preview5`, `0.2.1-incubating`): numbers first, a pre-release before its
    release."""
    m = _NUMERIC.match(version)
    if m is None:
        return (), False, version
    qualifier = m.group(2).lstrip(".-")
    return tuple(int(x) for x in m.group(1).split(".")), not maven_prerelease(version), \
        qualifier


def maven_prerelease(version: str) -> bool:
    m = _NUMERIC.match(version)
    qualifier = m.group(2).lstrip(".-") if m else version
    return bool(_PRE.search(qualifier))


def series(version: str) -> tuple[int, ...]:
    """major.minor of a version (the series a patch release stays in)."""
    m = _NUMERIC.match(version)
    return tuple(int(x) for x in m.group(1).split("."))[:2] if m else ()
