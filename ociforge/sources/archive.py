"""`archive`: a local or HTTP(S) archive pinned by sha256 (or sha512), with path mapping."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ByteSize, Field, ValidationInfo, model_validator

from ..archives import DEFAULT_MAX_MEMBERS, DEFAULT_MAX_SIZE, Limits, import_archive
from ..digests import file_hexdigest
from ..errors import RecipeError
from ..fetch import fetch, is_url, verify_local
from ..net.redact import redact
from ..spec import Spec, check_project_path
from ..tartree import Tree
from .base import BuildContext, PathMapSpec, Sha256, Sha512, SourceBase


def _url_or_project_path(value: str, info: ValidationInfo) -> str:
    """An HTTP(S) URL, or a local archive: then a path inside the project. Another
    scheme is refused by name (not taken for a path, which would be echoed with any
    credentials in it)."""
    if is_url(value):
        return value
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", value)
    if scheme:
        raise ValueError(f"unsupported URL scheme {scheme.group(1)!r} "
                         "(http and https only, or a path in the project)")
    return check_project_path(value, info)


class ArchiveCaps(Spec):
    """How far a source's archive may expand (`max_size`: bytes, or "8GiB", "500MB")
    and how many members it may have; past either the build stops, before the disk
    fills. Not keyed: a cap decides whether a layer is built, never what it holds."""

    max_size: Annotated[ByteSize, Field(gt=0)] = ByteSize(DEFAULT_MAX_SIZE)
    max_members: int = Field(DEFAULT_MAX_MEMBERS, gt=0)

    def limits(self) -> Limits:
        return Limits(int(self.max_size), self.max_members)


class ArchiveSource(SourceBase, ArchiveCaps):
    kind: Literal["archive"]
    url: Annotated[str, AfterValidator(_url_or_project_path)]
    sha256: Sha256 | None = None
    sha512: Sha512 | None = None
    paths: list[PathMapSpec] = []
    preserve_owners: bool = False

    @model_validator(mode="after")
    def _pinned(self) -> ArchiveSource:
        if not self.sha256 and not self.sha512:
            raise ValueError("an archive must be pinned with sha256 (or sha512)")
        return self

    def pins(self) -> dict[str, str]:
        out = {}
        if self.sha256:
            out["sha256"] = self.sha256
        if self.sha512:
            out["sha512"] = self.sha512
        return out

    def key_material(self, ctx: BuildContext) -> dict[str, Any]:
        # The URL is not part of the key: the same pinned bytes from a mirror are
        # the same layer.
        return {"kind": "archive", "pins": self.pins(),
                "paths": [p.key() for p in self.paths], "preserve_owners": self.preserve_owners}

    def obtain(self, ctx: BuildContext) -> Path:
        if is_url(self.url):
            return fetch(self.url, self.pins(), session=ctx.session, policy=ctx.retry)
        path = ctx.project_path(self.url)
        if not path.is_file():  # the recipe names a file the checkout lacks: exit 3
            raise RecipeError(f"archive {self.url} does not exist (paths are relative to "
                              f"{ctx.project_root})")
        return verify_local(path, self.pins())

    def populate(self, tree: Tree, ctx: BuildContext, workdir: Path) -> dict[str, Any]:
        path = self.obtain(ctx)
        return import_into(tree, ctx, workdir, path, self.paths, self.preserve_owners,
                           {"url": redact(self.url), **self.pins()}, self.limits())


def import_into(tree: Tree, ctx: BuildContext, workdir: Path, path: Path,
                paths: list[PathMapSpec], preserve_owners: bool,
                provenance: dict[str, Any], limits: Limits) -> dict[str, Any]:
    """Import an archive's mapped members, staging file data under `workdir`."""
    stats = import_archive(path, tree, workdir / "archive", sde=ctx.sde,
                           maps=[p.to_map() for p in paths], owner=tree.owner,
                           preserve_owners=preserve_owners, limits=limits)
    if "sha256" not in provenance:
        provenance["sha256"] = file_hexdigest(path)
    return {**provenance, "members": stats.members, "selected": stats.selected}
