"""A pod template for an image, for Spark's `spark.kubernetes.driver.podTemplateFile` /
`spark.kubernetes.executor.podTemplateFile` (or a Spark operator's `template`), that a
namespace enforcing Pod Security `restricted` admits and the image runs under.

Everything comes from the resolved recipe, so no image has to be built to get one: the
user and group from the image config's `user`, the paths the image writes from its
declared `volumes`, its working directory, the directories its environment points
Spark, Python and Jupyter at, and the `writable` paths of the check sets that apply to
it (what `ociforge test` runs with a read-only root); each becomes an `emptyDir`, since
`readOnlyRootFilesystem` leaves nothing else writable. GPU images' executors ask for
`nvidia.com/gpu`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from ..checks.model import CheckSet
from ..errors import RecipeError
from ..outputs import full_reference
from ..recipes.models import ImageDef

if TYPE_CHECKING:
    from ..recipes import Project

ROLES = ("driver", "executor")

# The container names Spark gives its pods (Constants.DEFAULT_DRIVER_CONTAINER_NAME,
# DEFAULT_EXECUTOR_CONTAINER_NAME); a template's first container is Spark's container.
CONTAINER_NAMES = {"driver": "spark-kubernetes-driver", "executor": "spark-kubernetes-executor"}

# Environment variables whose value is a directory the entrypoint, Spark, Python or
# Jupyter write into (comma-separated lists for SPARK_LOCAL_DIRS).
WRITTEN_DIR_ENV = ("SPARK_LOG_DIR", "SPARK_PID_DIR", "SPARK_LOCAL_DIRS", "SPARK_WORKER_DIR",
                   "PYTHONPYCACHEPREFIX", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR",
                   "JUPYTER_RUNTIME_DIR", "IPYTHONDIR")

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class WrittenPath:
    path: str
    why: list[str]            # where the recipe says the image writes there
    covered_by: str | None    # a written path above it (whose emptyDir holds it)


@dataclass
class PodTemplate:
    image: str                # the ociforge image name
    role: str
    manifest: dict[str, Any]
    written: list[WrittenPath] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, "role": self.role, "template": self.manifest,
                "written_paths": [{"path": w.path, "why": w.why, "covered_by": w.covered_by}
                                  for w in self.written]}


def _user(image: ImageDef) -> tuple[int, int]:
    user = image.config.user or ""
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise RecipeError(f"image {image.name!r}: config.user {user!r} is not numeric "
                          "(Pod Security `restricted` needs a numeric non-root runAsUser)")
    if int(uid) == 0:
        raise RecipeError(f"image {image.name!r}: config.user {user!r} is root; Pod Security "
                          "`restricted` refuses runAsUser 0")
    return int(uid), int(gid or uid)


def _paths(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip().startswith("/")]


def written_paths(image: ImageDef, checksets: Iterable[CheckSet]) -> list[WrittenPath]:
    """Every path the image writes, with why; nested ones name the path that holds them."""
    found: dict[str, list[str]] = {}

    def add(path: str, why: str) -> None:
        norm = str(PurePosixPath(path))
        found.setdefault(norm, [])
        if why not in found[norm]:
            found[norm].append(why)

    for v in image.config.volumes:
        add(v, "config volume")
    if image.config.workdir:
        add(image.config.workdir, "config workdir")
    for name in WRITTEN_DIR_ENV:
        for p in _paths(image.config.env.get(name, "")):
            add(p, f"env {name}")
    for cs in checksets:
        for p in cs.writable:
            add(p, "check set writable")
    out = []
    for path in sorted(found):
        above = [q for q in found if q != path and PurePosixPath(path).is_relative_to(q)]
        out.append(WrittenPath(path, found[path], min(above, key=len) if above else None))
    return out


def volume_name(path: str) -> str:
    """A DNS-1123 label for a mount path: `/opt/spark/work-dir` -> `opt-spark-work-dir`."""
    name = re.sub(r"[^a-z0-9-]+", "-", path.lower()).strip("-") or "root"
    return name[-63:].lstrip("-")


def pod_template(image: ImageDef, role: str, checksets: Iterable[CheckSet], *,
                 reference: str | None = None) -> PodTemplate:
    """The template for `role` (driver or executor) of a resolved image."""
    if role not in ROLES:
        raise RecipeError(f"unknown role {role!r} (driver, executor)")
    uid, gid = _user(image)
    written = written_paths(image, checksets)
    mounts = [w.path for w in written if w.covered_by is None]
    ref = reference or full_reference(f"{image.repository or image.name}:{image.tag}")
    container: dict[str, Any] = {
        "name": CONTAINER_NAMES[role],
        "image": ref,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
        },
        "volumeMounts": [{"name": volume_name(p), "mountPath": p} for p in mounts],
    }
    if role == "executor" and "gpu" in image.features:
        container["resources"] = {"limits": {GPU_RESOURCE: 1}}
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"labels": {
            "app.kubernetes.io/name": "spark",
            "app.kubernetes.io/component": role,
            "app.kubernetes.io/managed-by": "ociforge",
            "ociforge.io/image": image.name,
        }},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": uid,
                "runAsGroup": gid,
                "fsGroup": gid,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [{"name": volume_name(p), "emptyDir": {}} for p in mounts],
        },
    }
    return PodTemplate(image.name, role, manifest, written)


def template_for(project: Project, name: str, role: str, *, with_features: Sequence[str] = (),
                 reference: str | None = None) -> PodTemplate:
    """The template of image `name` (or alias; plus `with_features`, as `--with` makes
    it) from the project's recipes and the check sets that apply to it."""
    image = project.with_features(name, list(with_features)) if with_features \
        else project.resolve(name)
    sets = [cs for cs in project.checks.values() if cs.applies_to(image.name, image.features)]
    return pod_template(image, role, sets, reference=reference)
