"""What every layer source shares: the source contract, the build context, spec helpers.

A source goes through three phases, each with its own rule:

    lock(ctx, update)          may use the network; writes the source's lock file(s)
                               (`ociforge lock` only)
    check_lock(ctx)            no network: the lock files exist and hold what the
                               recipe asks for (every build, before any key); never
                               resolves: a missing pin is a LockError
    key_material(ctx) -> dict  pure: reads the recipe, the checkout and lock files;
                               no network, no subprocess, no writes
    populate(tree, ctx, workdir) -> dict
                               fills the layer's tree (network and tools allowed);
                               returns provenance for SBOMs

The build session checks every lock, then computes every key, then builds only the
layers whose key is not cached, so a bad or missing pin fails before anything is built;
pins are made only by `ociforge lock` (never on first use). Base images (for
`builder` sources) reach a source only through the context's `images` port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol, Self, runtime_checkable

from pydantic import AfterValidator, BeforeValidator, Field

from ..archives import PathMap
from ..digestcache import DigestCache
from ..errors import RecipeError
from ..net.retry import DOWNLOAD_ATTEMPTS, RetryPolicy
from ..spec import Spec, inside_project, invalid

if TYPE_CHECKING:
    import requests

    from ..tartree import Tree

DEFAULT_INDEX_URL = "https://pypi.org/simple"


class ImagePort(Protocol):
    """Images a source may build on (a `builder`'s `FROM`), served by the build session:
    the session assembles them before any key is computed, so `digest` is a lookup."""

    def digest(self, name: str) -> str:
        """The manifest digest of image `name`."""
        ...

    def export(self, name: str, dest: Path) -> str:
        """Write image `name` as an OCI archive at `dest`; returns its manifest digest."""
        ...


class NoImages:
    """The port of a context that serves no images (tests, `layers build` of plain layers)."""

    def digest(self, name: str) -> str:
        raise RecipeError(f"base image {name!r}: this build has no images to build on")

    def export(self, name: str, dest: Path) -> str:
        return self.digest(name)


@dataclass(frozen=True)
class LockResult:
    """What `lock` did to one lock file: `entries` pins it holds, whether it changed."""

    path: str
    entries: int
    changed: bool


@dataclass(frozen=True)
class BuildContext:
    """Everything a source may consult, the same for every layer of a run (frozen:
    a layer's scratch space is the `workdir` given to `populate`, not state here)."""

    project_root: Path
    sde: int = 0
    scratch_root: Path = Path("/tmp")  # lock-phase temporary files (a pip report)
    digests: DigestCache = field(default_factory=DigestCache)
    index_url: str = DEFAULT_INDEX_URL
    maven_repos: tuple[str, ...] = ()  # --maven-repo; the maven source's default list
    images: ImagePort = field(default_factory=NoImages)
    # Every request of the build retries under this one policy; tests pass one whose
    # `sleep` records instead of sleeping.
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(DOWNLOAD_ATTEMPTS))

    @cached_property
    def session(self) -> requests.Session:
        """HTTP session, created on first use (requests is slow to import)."""
        from ..net.http import new_session

        return new_session()

    def project_path(self, rel: str, *, follow_last: bool = True) -> Path:
        """A path named in a recipe, under the project root. The loader refused paths
        that leave the project; checked again here, as the checkout is read."""
        try:
            return inside_project(self.project_root, rel, follow_last=follow_last)
        except ValueError as e:
            raise RecipeError(f"recipe path {e}") from None


@runtime_checkable
class Source(Protocol):
    """The contract every layer source implements (see the module docstring)."""

    kind: str
    moving: ClassVar[bool]

    def needs_images(self) -> list[str]: ...

    def lock(self, ctx: BuildContext, update: bool = False) -> list[LockResult]: ...

    def check_lock(self, ctx: BuildContext) -> list[LockResult]: ...

    def key_material(self, ctx: BuildContext) -> dict[str, Any]: ...

    def populate(self, tree: Tree, ctx: BuildContext, workdir: Path) -> dict[str, Any]: ...


def _parse_owner(v: Any) -> Any:
    if isinstance(v, str):
        m = re.fullmatch(r"(\d+):(\d+)", v.strip())
        if not m:
            raise ValueError("owner must be 'UID:GID' with numeric ids, e.g. '185:185'")
        return (int(m.group(1)), int(m.group(2)))
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    return v


MAX_ID = 2**32 - 1  # uid_t and gid_t are 32 bits


def _owner_in_range(v: tuple[int, int]) -> tuple[int, int]:
    for what, n in zip(("uid", "gid"), v, strict=True):
        if not 0 <= n <= MAX_ID:
            raise invalid(f"{what} {n} is out of range (0 to {MAX_ID})")
    return v


def _parse_mode(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, int):
        raise ValueError("write modes as quoted octal strings, e.g. '0755'")
    if isinstance(v, str) and re.fullmatch(r"0?[0-7]{3,4}", v.strip()):
        return int(v.strip(), 8)
    raise ValueError(f"{v!r} is not an octal mode like '0755'")


Owner = Annotated[tuple[int, int], BeforeValidator(_parse_owner),
                  AfterValidator(_owner_in_range)]
Mode = Annotated[int | None, BeforeValidator(_parse_mode)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Sha512 = Annotated[str, Field(pattern=r"^[0-9a-f]{128}$")]


class SourceBase(Spec):
    """A source's recipe fields, with the phases most sources do not need."""

    # A source whose pins snapshot something that moves (a Debian suite): `ociforge
    # lock` re-resolves it only when asked (`--update`), as it would pin other versions
    # on another day. The others (exact versions) are re-resolved by every `lock`.
    moving: ClassVar[bool] = False

    def hash_checkout(self, ctx: BuildContext) -> None:
        """Hash the checkout files this source takes (into ctx.digests), so `plan`
        can hand their digests to runners with a fresh checkout; none by default."""

    def needs_images(self) -> list[str]:
        """Images this source builds on; the session assembles them first."""
        return []

    def for_platform(self, platform: str) -> Self:
        """This source as built for `platform` (`linux/arm64`): itself, unless its bytes
        depend on the architecture; then a copy for that architecture with its own lock
        file (see platforms.py), so arch-independent layers keep one key everywhere."""
        return self

    def lock(self, ctx: BuildContext, update: bool = False) -> list[LockResult]:
        """Settle this source's lock files (nothing to lock by default)."""
        return []

    def check_lock(self, ctx: BuildContext) -> list[LockResult]:
        """Raise LockError unless the lock files are present and current (no network)."""
        return []


class PathMapSpec(Spec):
    """`from` a path inside the archive (file or directory) `to` a path in the image."""

    from_: str = Field("", alias="from")
    to: str = "/"
    include: list[str] = []
    exclude: list[str] = []

    def to_map(self) -> PathMap:
        return PathMap(self.from_.strip("/"), self.to, list(self.include), list(self.exclude))

    def key(self) -> dict[str, Any]:
        return {"from": self.from_.strip("/"), "to": self.to, "include": self.include,
                "exclude": self.exclude}
