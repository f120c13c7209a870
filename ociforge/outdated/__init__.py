"""`ociforge outdated`: what is newer upstream than the locks, per layer.

One provider per kind of pin (`debian`, `pip`, `maven`, `spark`); each reads the
recipes and lock files and asks its upstream (index, repository) what exists. Nothing
is written. A layer a provider cannot check is listed as unchecked, with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .debian import DebianProvider
from .maven import MavenProvider
from .model import Finding, Provider, Report, Unchecked
from .pip import PipProvider
from .spark import SparkProvider

if TYPE_CHECKING:
    from ..recipes import Project
    from ..sources.base import BuildContext

__all__ = ["Finding", "Provider", "Report", "Unchecked", "check", "providers"]


def providers() -> list[Provider]:
    return [DebianProvider(), PipProvider(), MavenProvider(), SparkProvider()]


def check(project: Project, layers: list[str], ctx: BuildContext,
          using: list[Provider] | None = None) -> Report:
    """Every provider over these layers, in order; one report."""
    report = Report()
    for provider in using if using is not None else providers():
        report.add(provider.check(project, layers, ctx))
    return report
