"""Base images for `builder` sources, taken from ociforge itself (no registry needed).

A base is named like any image: if the project's recipes define it, it is assembled
first (cheap when its layers are cached, and never stale against its definition);
otherwise it must already be tagged in the store. Its manifest digest goes into
the builder layer's input key; for the build it is exported as an OCI archive.
"""

from __future__ import annotations

import contextvars
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RecipeError
from .base import BuildContext

if TYPE_CHECKING:
    from ..recipes import Project

_resolving: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "builder_bases_resolving", default=())


def resolve_base(ctx: BuildContext, name: str) -> str:
    """The manifest digest of base image `name`, assembling it if the project defines it."""
    from ..recipes import Project  # recipes imports the sources: import late

    project = Project.load(ctx.project_root)
    if name in project.images:
        chain = _resolving.get()
        if name in chain:
            raise RecipeError(f"builder base image {name!r} depends on itself "
                              f"({' -> '.join([*chain, name])})")
        token = _resolving.set((*chain, name))
        try:
            return _assemble(ctx, project, name)
        finally:
            _resolving.reset(token)
    entry = ctx.store.tags().get(name)
    if entry is None:
        raise RecipeError(f"builder base image {name!r} is neither defined by the recipes "
                          f"in {ctx.project_root} nor assembled in the store")
    return str(entry["digest"])


def _assemble(ctx: BuildContext, project: Project, name: str) -> str:
    from ..assemble import assemble
    from ..layers import LayerBuilder

    # A context of its own: the caller may be in the middle of building a layer.
    builder = LayerBuilder(dataclasses.replace(ctx, staging=None))
    return assemble(ctx.store, project, name, builder).manifest.digest


def export_base(ctx: BuildContext, name: str, dest: Path) -> tuple[Path, str]:
    """Write base image `name` as an OCI archive at `dest`; returns (dest, digest)."""
    from ..outputs.archive import write_archive

    digest = resolve_base(ctx, name)
    ref = ctx.store.image(name)
    if ref.descriptor.digest != digest:
        raise RecipeError(f"builder base image {name!r} changed in the store during the build")
    write_archive(ctx.store, [ref], dest)
    return dest, digest
