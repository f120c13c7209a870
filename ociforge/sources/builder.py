"""`builder`: a layer made by a Dockerfile build in a container engine.

For layers that need their own toolchain, above all a Spark distribution compiled
from source with Maven (`docker/spark-builder/`). The build runs with whatever
engine the machine has (engines.py), its final stage is written as a tar
(`--output type=tar`) and imported through the archive machinery, with the same
path mapping and the same refusal of unsafe paths as the `archive` source.

The input key is the build's inputs, not its output: the context files (content
and normalised modes), the Dockerfile, the build args, the target stage, the
platform and the manifest digests of the base images. So a cached layer never runs
the engine again (and a machine without an engine can still use it), and changing
one build arg rebuilds. Not keyed: the engine, and `pass_env` args (mirrors, JVM
memory), which say where bytes come from or how fast, not what is built.
"""

from __future__ import annotations

import fnmatch
import os
import platform as host
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..archives import iter_tar_names
from ..digests import file_hexdigest, key_of
from ..engines import BuildRequest, base_reference, cleanup, find_engine, run_build
from ..errors import BuildError, RecipeError
from ..net.redact import redact_text
from ..spec import ProjectPath, check_project_path
from ..store import cache_home
from ..tartree import Tree, normalize_path
from .archive import ArchiveCaps, import_into
from .base import BuildContext, PathMapSpec, SourceBase

ArgName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_platform() -> str:
    machine = host.machine().lower()
    return f"linux/{ARCHES.get(machine, machine)}"


def context_entries(root: Path, exclude: list[str],
                    digest: Callable[[Path], str] = file_hexdigest) -> list[list[Any]]:
    """[path, kind, mode, link target, sha256] of every context file, sorted. Modes are
    normalised like the `files` source (0755 if any exec bit, else 0644), so the
    checkout's umask does not change the key; an excluded directory is not entered."""
    def excluded(rel: str) -> bool:
        return any(fnmatch.fnmatchcase(rel, p.strip("/")) for p in exclude)

    out: list[list[Any]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not excluded(prefix + d))
        for d in dirnames:
            path = os.path.join(dirpath, d)
            if os.path.islink(path):
                out.append([prefix + d, "symlink", 0o777, os.readlink(path), ""])
            else:
                out.append([prefix + d, "dir", 0o755, "", ""])
        for name in sorted(filenames):
            rel, path = prefix + name, os.path.join(dirpath, name)
            if excluded(rel):
                continue
            st = os.lstat(path)
            if os.path.islink(path):
                out.append([rel, "symlink", 0o777, os.readlink(path), ""])
            else:
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                out.append([rel, "file", mode, "", digest(Path(path))])
    return sorted(out, key=lambda e: str(e[0]).split("/"))


def _secrets(values: list[str]) -> list[str]:
    """What to hide of `pass_env` values in logs and errors: the credentials inside
    URL-valued args (`https://user:token@mirror/`), and any other value of 8 characters
    or more whole (a token; shorter ones, `-Xmx4g`, would hide common text)."""
    out = []
    for v in values:
        parts = urlsplit(v)
        if parts.scheme and parts.netloc:
            if parts.password:
                out.append(parts.password)
        elif len(v) >= 8:
            out.append(v)
    return out


class BuilderSource(SourceBase, ArchiveCaps):
    kind: Literal["builder"]
    context: ProjectPath
    dockerfile: str = "Dockerfile"  # relative to the context; inside the project
    build_args: dict[ArgName, str] = {}
    # Build args passed from ociforge's own environment when set there, and not keyed.
    pass_env: list[ArgName] = []
    target: str | None = None
    # ARG name → ociforge image; the ARG is set to where the engine reads the image
    # (`oci-archive:PATH`), so a Dockerfile says `ARG BASE` + `FROM ${BASE}`.
    base_images: dict[ArgName, str] = {}
    engine: Literal["auto", "buildah", "podman", "docker"] = "auto"
    platform: str | None = Field(None, pattern=r"^linux/(amd64|arm64)$")
    exclude: list[str] = []  # context paths that do not reach the build (.dockerignore)
    expect: list[str] = []  # output paths that must exist, e.g. [jars/, bin/spark-submit]
    paths: list[PathMapSpec] = []
    preserve_owners: bool = False

    @model_validator(mode="after")
    def _args_once(self) -> BuilderSource:
        named = [*self.build_args, *self.pass_env, *self.base_images]
        dup = sorted({n for n in named if named.count(n) > 1})
        if dup:
            raise ValueError(f"build arg {', '.join(dup)} is set in more than one of "
                             "build_args, pass_env and base_images")
        return self

    @field_validator("dockerfile")
    @classmethod
    def _dockerfile_inside(cls, v: str, info: ValidationInfo) -> str:
        if "context" in info.data:  # else the context's own error is reported
            check_project_path(os.path.join(info.data["context"], v), info)
        return v

    def _dockerfile_rel(self) -> str:
        return os.path.join(self.context, self.dockerfile)

    # -- inputs ----------------------------------------------------------------------

    def needs_images(self) -> list[str]:
        return [name for _, name in sorted(self.base_images.items())]

    def context_dir(self, ctx: BuildContext) -> Path:
        path = ctx.project_path(self.context)
        if not path.is_dir():
            raise RecipeError(f"builder source: context {self.context} is not a directory "
                              f"(paths are relative to {ctx.project_root})")
        return path

    def dockerfile_path(self, ctx: BuildContext) -> Path:
        self.context_dir(ctx)
        path = ctx.project_path(self._dockerfile_rel())
        if not path.is_file():
            raise RecipeError(f"builder source: {self.context}/{self.dockerfile} does not exist")
        return path

    def hash_checkout(self, ctx: BuildContext) -> None:
        context_entries(self.context_dir(ctx), self.exclude, ctx.digests.sha256)

    def key_material(self, ctx: BuildContext) -> dict[str, Any]:
        entries = context_entries(self.context_dir(ctx), self.exclude, ctx.digests.sha256)
        return {
            "kind": "builder", "v": 1,
            "context": key_of(entries),
            "dockerfile": file_hexdigest(self.dockerfile_path(ctx)),
            "build_args": dict(sorted(self.build_args.items())),
            "target": self.target,
            "platform": self.platform or host_platform(),
            "base_images": {arg: ctx.images.digest(name)
                            for arg, name in sorted(self.base_images.items())},
            "expect": [normalize_path(p) for p in self.expect],
            "paths": [p.key() for p in self.paths],
            "preserve_owners": self.preserve_owners,
        }

    # -- build -----------------------------------------------------------------------

    def populate(self, tree: Tree, ctx: BuildContext, workdir: Path) -> dict[str, Any]:
        dockerfile = self.dockerfile_path(ctx)
        engine = find_engine(self.engine)
        work = workdir.resolve()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        log = cache_home() / "logs" / f"builder-{stamp}-{os.getpid()}.log"
        passed = {n: os.environ[n] for n in self.pass_env if os.environ.get(n)}
        req = BuildRequest(context=self.context_dir(ctx), dockerfile=dockerfile,
                           output=work / "output.tar", workdir=work,
                           build_args={**self.build_args, **passed}, target=self.target,
                           platform=self.platform, hide=_secrets(list(passed.values())))
        bases = {}
        try:
            for arg, name in sorted(self.base_images.items()):
                archive = work / f"base-{arg}.tar"
                digest = ctx.images.export(name, archive)
                req.build_args[arg] = base_reference(engine, archive, req, log)
                bases[arg] = {"image": name, "manifest_digest": digest}
            run_build(engine, req, log)
        finally:
            cleanup(engine, req, log)
        self.check_output(req.output)
        stats = import_into(tree, ctx, work, req.output, self.paths, self.preserve_owners,
                            {"engine": engine.name}, self.limits())
        return {**stats, "context": self.context, "dockerfile": self.dockerfile,
                "build_args": {k: redact_text(v) for k, v in sorted(self.build_args.items())},
                "target": self.target,
                "base_images": bases}

    def check_output(self, output: Path) -> None:
        """A clear error for an empty output or one without the expected paths, before
        the path mapping reports something vaguer."""
        names = {normalize_path(n) for n in iter_tar_names(output, self.limits())} - {""}
        if not names:
            stage = f"stage {self.target!r}" if self.target else "the last stage"
            raise BuildError(f"builder {self.context}: the build produced no files "
                             f"({stage} of {self.dockerfile} is empty)")
        present = set(names)
        for n in names:  # a directory counts even when the tar has no entry for it
            parts = n.split("/")
            present.update("/".join(parts[:i]) for i in range(1, len(parts)))
        missing = [p for p in self.expect if normalize_path(p) not in present]
        if missing:
            found = ", ".join(sorted(n for n in names if "/" not in n)[:8])
            raise BuildError(f"builder {self.context}: the build output lacks "
                             f"{', '.join(missing)} (its top level: {found})")
