"""Check declarations as they appear under `checks:` in recipe files.

    checks:
      spark:
        images: ["spark-*"]            # fnmatch patterns: a family, a variant, …
        files: [{path: /opt/entrypoint.sh, mode: "0755", owner: "0:0"}]
        commands: [{name: version, args: [...], expect: "version {version}"}]

`{version}` and `{label:NAME}` in strings are replaced from the image's labels
(`org.opencontainers.image.version`), so one declaration serves a whole family.
Workloads that need a server of the user's (an S3 endpoint, a Celeborn master) name
the variables they read from `ociforge test`'s environment in `host_env`, and use
them as `{env:NAME}`; `{run}` is unique per run and user, so two runs never share a
table or a path.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator, model_validator

from ..platforms import PLATFORM_PATTERN
from ..sources.base import Mode, Owner
from ..spec import ProjectPath, Spec, invalid

PlatformName = Annotated[str, Field(pattern=PLATFORM_PATTERN)]


class FileCheck(Spec):
    path: str
    # The path on another platform (a jar with a per-platform classifier, e.g. NVIDIA's
    # `-cuda12-arm64` RAPIDS build): the check names the file that platform's image has.
    platform_path: dict[PlatformName, str] = {}
    exists: bool = True
    mode: Mode = None
    owner: Owner | None = None
    contains: list[str] = []   # regexes the content must match (via container-structure-test)
    executable: bool | None = None


class MetadataCheck(Spec):
    user: str | None = None
    workdir: str | None = None
    entrypoint: list[str] | None = None
    env: dict[str, str] = {}
    # What one platform's image has instead (its recipe's `platform_env`: JAVA_HOME).
    platform_env: dict[PlatformName, dict[str, str]] = {}
    labels: dict[str, str] = {}


INPUTS_DIR = "/ocf-check"   # where a command's `inputs` appear in its container


class CommandCheck(Spec):
    """A command run in containerd: as the image user, and (unless disabled) again as an
    arbitrary uid with gid 0, a read-only root and tmpfs on the writable paths."""

    name: str
    args: list[str]
    env: dict[str, str] = {}
    expect: list[str] = []      # regexes stdout+stderr must match
    exit_code: int = 0
    arbitrary_uid: bool = True
    timeout: int = 300
    host_network: bool = False  # reach servers on the host's loopback (S3, Celeborn)
    # Project files (job scripts, SQL) mounted read-only at /ocf-check/<file name>.
    inputs: list[ProjectPath] = []

    @field_validator("inputs")
    @classmethod
    def _distinct_names(cls, value: list[str]) -> list[str]:
        names = [PurePosixPath(v).name for v in value]
        if len(set(names)) != len(names):
            raise invalid(f"inputs {value} share a file name (all go to {INPUTS_DIR})")
        return value


class Probe(Spec):
    http: str | None = None      # GET this URL until it answers 200
    expect: str | None = None    # regex the body (or the probe command's output) must match
    command: list[str] | None = None  # or run this in a second container on the host network


def _ready_port(value: int | str) -> int | str:
    """A port number, or a template (`{port}`, the one the check picks)."""
    if isinstance(value, str) and "{" in value:
        return value
    if not str(value).isdigit() or not 1 <= int(value) <= 65535:
        raise invalid(f"{value!r} is not a port (1 to 65535, or '{{port}}')")
    return value


class ServerCheck(Spec):
    """A long-running mode: started, polled until ready (bounded), probed, stopped."""

    name: str
    args: list[str]
    env: dict[str, str] = {}
    ready_port: Annotated[int | str, AfterValidator(_ready_port)] | None = None
    probe: Probe
    timeout: int = 180
    arbitrary_uid: bool = False  # also as 12345:0 with a read-only root


class DuplicateClassCheck(Spec):
    """No class (under `packages`, e.g. software/amazon/awssdk/) in two jars."""

    jars: str = "/opt/spark/jars/*.jar"
    packages: list[str] = []


class CheckSet(Spec):
    images: list[str] = []           # image-name patterns
    features: list[str] = []         # or: images that have any of these features
    files: list[FileCheck] = []
    metadata: MetadataCheck | None = None
    writable: list[str] = []         # must exist, be directories, belong to the image user
    writable_owner: Owner = (185, 185)
    world_writable_allowed: list[str] = ["/tmp", "/var/tmp", "/run/lock"]
    non_root: bool = True
    no_setuid: bool = True
    no_secrets: bool = True
    duplicate_classes: list[DuplicateClassCheck] = []
    commands: list[CommandCheck] = []
    servers: list[ServerCheck] = []
    gpu: bool = False                # GPU smoke (only where an NVIDIA GPU is present)
    # Variables read from ociforge's environment (endpoints, access keys) and given to
    # every container of the set; null: required (the set is skipped without it).
    host_env: dict[str, str | None] = {}

    @model_validator(mode="after")
    def _selects(self) -> CheckSet:
        if not self.images and not self.features:
            raise ValueError("give 'images' (name patterns) or 'features' to select images")
        used = set(_ENV_PLACEHOLDER.findall(repr([c.model_dump() for c in self.commands]
                                                 + [s.model_dump() for s in self.servers])))
        undeclared = sorted(used - set(self.host_env))
        if undeclared:
            raise ValueError(f"{{env:{undeclared[0]}}} is used but {undeclared[0]} is not in "
                             "'host_env'")
        return self

    def applies_to(self, image: str, features: list[str] | tuple[str, ...] = ()) -> bool:
        return (any(fnmatch.fnmatchcase(image, p) for p in self.images)
                or any(f in features for f in self.features))


_PLACEHOLDER = re.compile(r"\{(version|label:[^}]+|env:[^}]+|port|run)\}")
_ENV_PLACEHOLDER = re.compile(r"\{env:([^}]+)\}")


def substitute(value: Any, labels: dict[str, str], port: int | None = None, *,
               run: str | None = None, env: dict[str, str] | None = None) -> Any:
    """Replace {version}, {label:NAME}, {port}, {run} and {env:NAME} in strings, lists
    and dicts; what is not given yet stays as it is (the runtime fills it later)."""
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            key = m.group(1)
            found: str | None
            if key == "port":
                found = None if port is None else str(port)
            elif key == "run":
                found = run
            elif key == "version":
                found = labels.get("org.opencontainers.image.version")
            elif key.startswith("env:"):
                found = (env or {}).get(key[4:])
            else:
                found = labels.get(key.split(":", 1)[1])
            return m.group(0) if found is None else found
        return _PLACEHOLDER.sub(repl, value)
    if isinstance(value, list):
        return [substitute(v, labels, port, run=run, env=env) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, labels, port, run=run, env=env) for k, v in value.items()}
    return value


def missing_env(cs: CheckSet, environ: Mapping[str, str]) -> list[str]:
    """The set's required host variables that are unset (or empty)."""
    return [k for k, default in cs.host_env.items() if default is None and not environ.get(k)]


def host_env_values(cs: CheckSet, environ: Mapping[str, str]
                    ) -> dict[str, str]:
    """The set's host variables: from the environment, else their defaults."""
    out = {}
    for k, default in cs.host_env.items():
        value = environ.get(k) or default
        if value is not None:
            out[k] = value
    return out


def for_image(cs: CheckSet, labels: dict[str, str], platform: str | None = None
              ) -> CheckSet:
    """The check set with {version} and {label:…} filled in from an image's labels
    ({port} is left for the runtime, which picks one per server), and each file's path
    and metadata env those of the image's `platform`."""
    data = cs.model_dump()
    for f in data["files"]:
        f["path"] = f.pop("platform_path").get(platform, f["path"])
        if f["mode"] is not None:
            f["mode"] = f"{f['mode']:04o}"
        if f["owner"] is not None:
            f["owner"] = f"{f['owner'][0]}:{f['owner'][1]}"
    if data["metadata"] is not None:
        md = data["metadata"]
        md["env"] = {**md["env"], **md.pop("platform_env").get(platform, {})}
    data["writable_owner"] = f"{data['writable_owner'][0]}:{data['writable_owner'][1]}"
    return CheckSet.model_validate(substitute(data, labels))
