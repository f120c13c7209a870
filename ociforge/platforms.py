"""The platform axis: which OCI platforms ociforge builds, and how each is named by
the tools that pick per-architecture inputs (Debian, pip wheel tags).

A layer is made once per platform only when its source's bytes depend on the
architecture (a Debian root filesystem, wheels with native code); every other
layer is the same layer, with the same key and blob, on every platform. Lock files
of architecture-dependent sources get one file per architecture: `linux/amd64`
keeps the file the recipe names (so today's locks and keys stay as they are),
other platforms add their architecture before the suffix
(`layers/locks/debian-base.arm64.lock`, `python-deps-4.1.aarch64.lock`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .errors import RecipeError

DEFAULT_PLATFORM = "linux/amd64"
PLATFORMS = ("linux/amd64", "linux/arm64")  # index order: amd64 first
PLATFORM_PATTERN = r"^linux/(amd64|arm64)$"
# What `$OCIFORGE_PLATFORMS` restricts a run to (a comma list); CI sets linux/amd64.
PLATFORMS_ENV = "OCIFORGE_PLATFORMS"

_DEBIAN = {"linux/amd64": "amd64", "linux/arm64": "arm64"}
_MACHINE = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}  # uname -m, wheel tags


def check_platform(platform: str) -> str:
    if platform not in PLATFORMS:
        raise RecipeError(f"unknown platform {platform!r}: ociforge builds "
                          f"{', '.join(PLATFORMS)}")
    return platform


def debian_arch(platform: str) -> str:
    """Debian's architecture name (`arm64`)."""
    return _DEBIAN[check_platform(platform)]


def machine(platform: str) -> str:
    """The kernel's machine name, as wheel tags spell it (`aarch64`)."""
    return _MACHINE[check_platform(platform)]


def platform_of_machine(name: str) -> str:
    """The platform whose machine name (or Debian architecture) is `name`."""
    for platform in PLATFORMS:
        if name in (_MACHINE[platform], _DEBIAN[platform]):
            return platform
    raise RecipeError(f"no platform has the architecture {name!r}")


def arch_lock_file(lock_file: str, suffix: str) -> str:
    """`layers/locks/x.lock` → `layers/locks/x.SUFFIX.lock` (another platform's lock)."""
    head, dot, ext = lock_file.rpartition(".")
    return f"{head}.{suffix}.{ext}" if dot and "/" not in ext else f"{lock_file}.{suffix}"


def ordered(platforms: Iterable[str]) -> list[str]:
    """Each platform once, in index order (linux/amd64 first)."""
    wanted = {check_platform(p) for p in platforms}
    return [p for p in PLATFORMS if p in wanted]


def parse_platforms(values: Iterable[str]) -> list[str]:
    """`--platform` values (repeatable, or comma lists) as ordered platforms."""
    return ordered(p.strip() for v in values for p in v.split(",") if p.strip())


def selected(declared: Iterable[str]) -> list[str]:
    """The declared platforms a run builds: all, or those `$OCIFORGE_PLATFORMS` keeps."""
    declared = ordered(declared)
    env = os.environ.get(PLATFORMS_ENV, "").strip()
    if not env:
        return declared
    keep = set(parse_platforms([env]))
    return [p for p in declared if p in keep]
