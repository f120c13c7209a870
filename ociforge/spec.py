"""The one pydantic base for everything ociforge reads from YAML, and its path type.

Recipes, layer sources and check declarations all refuse unknown fields (a typo is
an error, not a silently ignored key) and are immutable once validated. A recipe
path read from the checkout is a `ProjectPath` (or `ProjectEntry`): it must stay
inside the project directory, symlinks followed, checked by `inside_project`. This
module imports nothing from ociforge, so any of them can use it without an import
cycle.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo
from pydantic_core import PydanticCustomError

# The validation context key under which the project loader passes its root, so that
# path fields are resolved against the real checkout (symlinks included) at load.
PROJECT_ROOT = "project_root"


class Spec(BaseModel):
    """A validated, frozen declaration; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def invalid(message: str) -> PydanticCustomError:
    """A validation error that reads as `message` alone (no "Value error, " before it)."""
    return PydanticCustomError("invalid", message)


def _lexical(rel: str) -> None:
    """What can be refused without a checkout: an absolute path, `..` above the root."""
    if os.path.isabs(rel):
        raise ValueError(f"{rel!r} is an absolute path; recipe paths are relative to "
                         "the project directory")
    if os.path.normpath(rel).split(os.sep, 1)[0] == "..":
        raise ValueError(f"{rel!r} leads outside the project directory")


def inside_project(root: Path, rel: str, *, follow_last: bool = True) -> Path:
    """`root / rel`, or ValueError saying why it leaves the project: an absolute path,
    `..` above the root, or a symlink on the way that leads outside. With
    `follow_last=False` the last component is not followed (the `files` source copies
    a symlink as a symlink, never reading what it points to)."""
    _lexical(rel)
    path = root / rel
    real_root = _realpath(str(root))
    parts = Path(rel).parts  # without `.` components
    real = None
    if ".." not in parts:
        real = _real_below(real_root, parts if follow_last else parts[:-1])
    if real is None:  # a symlink or `..` on the way: the general (slower) resolution
        try:
            if follow_last or path.name in ("", ".", ".."):
                real = os.path.realpath(path, strict=False)
            else:
                real = os.path.join(os.path.realpath(path.parent, strict=False), path.name)
        except (OSError, RuntimeError) as e:  # a symlink loop
            raise ValueError(f"{rel!r} cannot be resolved: {e}") from None
    if real != real_root and not real.startswith(real_root.rstrip("/") + "/"):
        raise ValueError(f"{rel!r} leads outside the project directory through a "
                         f"symlink (to {real})")
    return path


@functools.lru_cache(maxsize=16)
def _realpath(root: str) -> str:
    """The project root, resolved once per run (it does not move while one runs)."""
    return os.path.realpath(root)


def _real_below(real_root: str, parts: tuple[str, ...]) -> str | None:
    """`real_root/parts…` when no component is a symlink (one lstat each, instead of
    realpath's from `/`); None when one is."""
    path = real_root
    for i, part in enumerate(parts):
        path = os.path.join(path, part)
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return None
        except OSError:  # what does not exist holds no symlink
            return os.path.join(path, *parts[i + 1:])
    return path


def check_project_path(value: str, info: ValidationInfo, follow_last: bool = True) -> str:
    """The `ProjectPath` rule as a validator: lexical always, symlinks too when the
    project loader put the root in the validation context."""
    root = (info.context or {}).get(PROJECT_ROOT)
    try:
        if root is None:
            _lexical(value)
        else:
            inside_project(Path(root), value, follow_last=follow_last)
    except ValueError as e:
        raise invalid(str(e)) from None
    return value


def _check_entry(value: str, info: ValidationInfo) -> str:
    return check_project_path(value, info, follow_last=False)


# A file or directory read (or written) in the checkout: every component stays inside.
ProjectPath = Annotated[str, AfterValidator(check_project_path)]
# A `files` source's `src`: its directories stay inside; the last component may be a
# symlink, copied as one.
ProjectEntry = Annotated[str, AfterValidator(_check_entry)]
