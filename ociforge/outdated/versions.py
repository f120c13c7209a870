"""Which upstream versions are newer than a pin: one rule for every provider."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from packaging.version import InvalidVersion, Version

from .model import maven_key, maven_prerelease, series


def pep440(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def python_key(version: str) -> Any:
    v = pep440(version)
    return v if v is not None else Version("0.dev0")


def python_prerelease(version: str) -> bool:
    v = pep440(version)
    return v is None or v.is_prerelease or v.is_devrelease


Key = Callable[[str], Any]
IsPre = Callable[[str], bool]
PYTHON: tuple[Key, IsPre] = (python_key, python_prerelease)
MAVEN: tuple[Key, IsPre] = (maven_key, maven_prerelease)


def newer(current: str, candidates: Iterable[str], rule: tuple[Key, IsPre]
          ) -> tuple[str | None, str | None]:
    """(newest, newest in the same major.minor series) of the candidates newer than
    `current`; pre-releases only when `current` is one. (None, None): up to date."""
    key, pre = rule
    allow_pre = pre(current)
    later = [v for v in dict.fromkeys(candidates)
             if (allow_pre or not pre(v)) and key(v) > key(current)]
    if not later:
        return None, None
    same = [v for v in later if series(v) == series(current)]
    return max(later, key=key), (max(same, key=key) if same else None)
